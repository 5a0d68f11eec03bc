import { AgentVaultError, errorMessage, type ErrorRemedy } from '../core/errors';

export function usageError(message: string, hint?: string, remedy?: ErrorRemedy): AgentVaultError {
  return new AgentVaultError('QDRANT_USAGE', message, { kind: 'usage', hint, remedy });
}

export function verificationError(message: string, opts: { entry?: string; file?: string; hint?: string; remedy?: ErrorRemedy } = {}): AgentVaultError {
  return new AgentVaultError('QDRANT_VERIFICATION', message, {
    kind: 'failed',
    hint: opts.hint,
    remedy: opts.remedy,
    location: opts.entry || opts.file ? { entry: opts.entry, file: opts.file } : undefined,
  });
}

/** Shape of the error thrown by the client's fetcher for non-2xx answers. */
interface ApiErrorLike {
  status: number;
  statusText?: string;
  data?: unknown;
}

function isApiErrorLike(e: unknown): e is ApiErrorLike {
  return typeof e === 'object' && e !== null && typeof (e as { status?: unknown }).status === 'number' && 'data' in e;
}

/** `status.error` of a Qdrant error body, when there is one. */
export function qdrantErrorText(data: unknown): string | undefined {
  if (typeof data === 'object' && data !== null) {
    const status = (data as { status?: unknown }).status;
    if (typeof status === 'object' && status !== null && typeof (status as { error?: unknown }).error === 'string') {
      return (status as { error: string }).error;
    }
  }
  if (typeof data === 'string' && data.trim() !== '') return data.trim().slice(0, 300);
  return undefined;
}

/** HTTP status carried by an error, if any (client ApiError or our own HttpStatusError). */
export function errorStatus(e: unknown): number | undefined {
  if (e instanceof HttpStatusError) return e.status;
  if (isApiErrorLike(e)) return e.status;
  return undefined;
}

/** A non-2xx answer to one of our plain-fetch requests. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string | undefined,
    readonly what: string,
  ) {
    super(`${what}: HTTP ${status}${detail ? ` — ${detail}` : ''}`);
    this.name = 'HttpStatusError';
  }
}

/** Timed out waiting for Qdrant (our own timeouts and the client's). */
export function isTimeoutError(e: unknown): boolean {
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur instanceof Error; i++) {
    if (cur.name === 'QdrantClientTimeoutError' || cur.name === 'TimeoutError' || cur.name === 'AbortError' || cur.name === 'IdleTimeoutError') return true;
    // undici's Agent header/body timeouts (HeadersTimeoutError, BodyTimeoutError), wrapped by fetch.
    const code = (cur as { code?: unknown }).code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** Network-level failure: refused, reset, DNS, socket closed mid-body. */
export function isNetworkError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'PrematureEndError') return true;
  const codes = new Set([
    'ECONNREFUSED',
    'ECONNRESET',
    'ENOTFOUND',
    'EAI_AGAIN',
    'EPIPE',
    'ETIMEDOUT',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'UND_ERR_SOCKET',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_CLOSED',
    'ERR_STREAM_PREMATURE_CLOSE',
  ]);
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur instanceof Error; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && codes.has(code)) return true;
    if (cur.message === 'fetch failed' || cur.message === 'terminated' || cur.message === 'other side closed') return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** Worth another attempt: timeouts, network failures, 429 and 5xx answers. */
export function isTransient(e: unknown): boolean {
  if (e instanceof AgentVaultError) return e.code === 'QDRANT_TRANSFER_CHECKSUM';
  if (isTimeoutError(e) || isNetworkError(e)) return true;
  const status = errorStatus(e);
  return status !== undefined && (status === 429 || status >= 500);
}

/** One-line description of a third-party failure, with Qdrant's own error text when present. */
export function describeQdrantFailure(e: unknown): string {
  if (e instanceof HttpStatusError) return `HTTP ${e.status}${e.detail ? ` — ${e.detail}` : ''}`;
  if (isApiErrorLike(e)) {
    const text = qdrantErrorText(e.data);
    return `HTTP ${e.status}${e.statusText ? ` ${e.statusText}` : ''}${text ? ` — ${text}` : ''}`;
  }
  if (isTimeoutError(e)) {
    const cause = (e as { cause?: unknown }).cause;
    const inner = e instanceof Error && e.message === 'fetch failed' && cause instanceof Error ? `${cause.message} (${String((cause as { code?: unknown }).code ?? cause.name)})` : errorMessage(e);
    return `timed out (${inner || 'no answer'})`;
  }
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    const code = cause instanceof Error ? (cause as { code?: unknown }).code : undefined;
    if (e.message === 'fetch failed' && cause instanceof Error) return `${cause.message}${typeof code === 'string' && !cause.message.includes(code) ? ` (${code})` : ''}`;
    return e.message;
  }
  return String(e);
}

/**
 * Wraps a failure of a Qdrant call into an AgentVaultError naming the operation and the server.
 * Connection problems, timeouts, auth refusals and API errors are all of kind 'connection'.
 */
export function qdrantCallError(what: string, url: string, e: unknown): AgentVaultError {
  if (e instanceof AgentVaultError) return e;
  const status = errorStatus(e);
  const detail = describeQdrantFailure(e);
  let hint: string | undefined;
  let remedy: ErrorRemedy | undefined;
  if (status === 401 || status === 403) remedy = 'api-key';
  else if (isTimeoutError(e)) {
    remedy = 'more-time';
    hint = 'Check that the server is not overloaded.';
  } else if (isNetworkError(e)) hint = `Check that Qdrant is running and reachable at ${url}.`;
  return new AgentVaultError('QDRANT_CONNECTION', `Qdrant at ${url}: ${what} failed: ${detail}`, {
    kind: 'connection',
    hint,
    remedy,
    cause: e,
  });
}
