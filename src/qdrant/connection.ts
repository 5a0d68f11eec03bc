/**
 * One connection to a Qdrant server: the official REST client for JSON endpoints, plain `fetch`
 * for snapshot transfer, one place for the API key, timeouts, retries and error mapping.
 */
import { Agent } from 'undici';
import { QdrantClient } from './client';
import { AgentVaultError } from '../core/errors';
import type { SecretReader } from '../core/secrets';
import { HttpStatusError, isTransient, qdrantCallError, qdrantErrorText, usageError } from './errors';
import type { ProgressFn } from './types';

export const DEFAULT_API_KEY_ENV = 'QDRANT_API_KEY';
/** Key under which the VS Code extension keeps the API key in SecretStorage. */
export const API_KEY_SECRET = 'agent-vault.qdrant.apiKey';
/**
 * Default per-request timeout. At least 300 s: a collection snapshot is created synchronously
 * (`wait=true`), and a creation the client gives up on is still finished by the server.
 */
export const DEFAULT_TIMEOUT_MS = 300_000;
/** undici's own default `headersTimeout`/`bodyTimeout` (Node's built-in fetch uses it). */
export const UNDICI_DEFAULT_TIMEOUT_MS = 300_000;
export const DEFAULT_RETRIES = 3;
const MAX_TIMER_MS = 2_147_483_647;
export const DEFAULT_RETRY_DELAY_MS = 500;

export interface ApiKeySource {
  /** Name of an environment variable that must hold the key (an error if it is unset). */
  envVar?: string;
  env?: NodeJS.ProcessEnv;
  secrets?: SecretReader;
  secretKey?: string;
}

/**
 * The API key, from (in this order) the explicitly named environment variable, SecretStorage,
 * then `QDRANT_API_KEY`. Undefined when none is configured (Qdrant without authentication).
 */
export async function resolveApiKey(src: ApiKeySource = {}): Promise<string | undefined> {
  const env = src.env ?? process.env;
  if (src.envVar !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(src.envVar))
      throw usageError(`'${src.envVar}' (the environment variable named for the Qdrant API key) is not a valid environment variable name`, undefined, 'api-key-env');
    const v = env[src.envVar];
    if (v === undefined || v === '') {
      throw usageError(`Environment variable ${src.envVar} (named for the Qdrant API key) is not set or empty`, undefined, 'api-key-env');
    }
    return v;
  }
  if (src.secrets) {
    const v = await src.secrets.get(src.secretKey ?? API_KEY_SECRET);
    if (v) return v;
  }
  const v = env[DEFAULT_API_KEY_ENV];
  return v === undefined || v === '' ? undefined : v;
}

export interface QdrantConnectionOptions {
  url: string;
  apiKey?: string;
  /** Per request for API calls; for snapshot downloads, the longest wait without receiving data. */
  timeoutMs?: number;
  /**
   * Longest wait for a snapshot upload, which includes the server's recovery of the collection
   * (default: the larger of `timeoutMs` and one hour).
   */
  uploadTimeoutMs?: number;
  /** Extra attempts for idempotent calls and downloads after a transient failure. */
  retries?: number;
  /** First back-off delay; doubles on each attempt. */
  retryDelayMs?: number;
  onProgress?: ProgressFn;
}

/** Normalises and checks a server URL; strips credentials, query and trailing slash. */
export function normaliseQdrantUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw usageError(`Qdrant URL '${raw}' is not a valid URL`, undefined, 'qdrant-url');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw usageError(`Qdrant URL '${raw}' must start with http:// or https://`, undefined, 'qdrant-url');
  if (u.username || u.password) throw usageError(`The Qdrant URL must not contain credentials; the API key is given on its own, through an environment variable`, undefined, 'api-key');
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.protocol}//${u.host}${path}`;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\./.test(host);
}

export class QdrantConnection {
  readonly url: string;
  readonly client: QdrantClient;
  readonly timeoutMs: number;
  readonly uploadTimeoutMs: number;
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly onProgress: ProgressFn;
  readonly #apiKey: string | undefined;
  /**
   * HTTP agents for snapshot transfer. Node's built-in fetch gives up waiting for response headers
   * (and between body chunks) after undici's default 300 s, whatever our own timeout says; with
   * `wait=true` Qdrant answers an upload only after the whole recovery. So, like the official
   * client (@qdrant/js-client-rest dist/cjs/dispatcher.js: an undici Agent passed as `dispatcher`),
   * transfers go through our own Agent whose header/body timeouts are the project's options.
   */
  readonly #agents = new Map<number, Agent>();

  constructor(opts: QdrantConnectionOptions) {
    this.url = normaliseQdrantUrl(opts.url);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.uploadTimeoutMs = opts.uploadTimeoutMs ?? Math.max(this.timeoutMs, 3_600_000);
    this.retries = opts.retries ?? DEFAULT_RETRIES;
    this.retryDelayMs = opts.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    // Timers (AbortSignal.timeout, undici's) fire at once beyond 2^31-1 ms (~24.8 days).
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0 || this.timeoutMs > MAX_TIMER_MS)
      throw usageError(`The Qdrant request timeout (timeoutMs) must be a positive number of milliseconds up to ${MAX_TIMER_MS} (got ${opts.timeoutMs})`, undefined, 'qdrant-timeout');
    if (!Number.isFinite(this.uploadTimeoutMs) || this.uploadTimeoutMs <= 0 || this.uploadTimeoutMs > MAX_TIMER_MS)
      throw usageError(`The Qdrant upload timeout (uploadTimeoutMs) must be a positive number of milliseconds up to ${MAX_TIMER_MS} (got ${opts.uploadTimeoutMs})`, undefined, 'qdrant-upload-timeout');
    if (!Number.isInteger(this.retries) || this.retries < 0) throw usageError(`The number of Qdrant retries (retries) must be a whole number ≥ 0 (got ${opts.retries})`, undefined, 'qdrant-retries');
    this.onProgress = opts.onProgress ?? (() => undefined);
    this.#apiKey = opts.apiKey;
    const parsed = new URL(this.url);
    if (opts.apiKey && parsed.protocol === 'http:' && !isLoopback(parsed.hostname)) {
      this.onProgress({ phase: 'warning', message: `The API key is sent over unencrypted HTTP to ${parsed.host}; use https:// for remote servers.` });
    }
    // The key goes in as a plain header (not `apiKey`) so the client neither forces https nor prints to the console.
    this.client = new QdrantClient({
      url: this.url,
      timeout: this.timeoutMs,
      checkCompatibility: false,
      headers: opts.apiKey ? { 'api-key': opts.apiKey } : undefined,
    });
  }

  /** Header and body timeouts the transfer agent of `kind` uses (for tests and docs). */
  transferTimeouts(kind: 'upload' | 'download'): { headersTimeout: number; bodyTimeout: number } {
    const ms = kind === 'upload' ? this.uploadTimeoutMs : this.timeoutMs;
    return { headersTimeout: ms, bodyTimeout: ms };
  }

  /** The undici Agent for one timeout value (created on first use). */
  agentFor(ms: number): Agent {
    let a = this.#agents.get(ms);
    if (!a) {
      a = new Agent({ headersTimeout: ms, bodyTimeout: ms, keepAliveTimeout: 10_000, connections: 8 });
      this.#agents.set(ms, a);
    }
    return a;
  }

  /** Closes the transfer agents (idle keep-alive sockets); the connection stays usable. */
  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
  }

  /** Headers for plain-fetch requests. */
  authHeaders(): Record<string, string> {
    return this.#apiKey ? { 'api-key': this.#apiKey } : {};
  }

  endpoint(path: string): string {
    return this.url + path;
  }

  /**
   * Runs one API call. With `retry`, transient failures (timeouts, network errors, 429, 5xx)
   * are retried up to `retries` times with exponential back-off. Failures become AgentVaultError
   * (kind 'connection') naming the operation.
   */
  async call<T>(what: string, fn: (client: QdrantClient) => Promise<T>, opts: { retry?: boolean } = {}): Promise<T> {
    try {
      return await this.withRetry(what, () => fn(this.client), opts.retry ?? false);
    } catch (e) {
      throw qdrantCallError(what, this.url, e);
    }
  }

  /** Retries `fn` on transient failures (when `retry`); rethrows the last error unchanged. */
  async withRetry<T>(what: string, fn: (attempt: number) => Promise<T>, retry = true): Promise<T> {
    const max = retry ? this.retries : 0;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (attempt >= max || !isTransient(e)) throw e;
        this.onProgress({ phase: 'retry', what, attempt: attempt + 1, error: e instanceof Error ? e.message : String(e) });
        await new Promise((r) => setTimeout(r, this.retryDelayMs * 2 ** attempt));
      }
    }
  }

  /**
   * Plain `fetch` with the API key, a total timeout (`timeoutMs`, unless a `signal` is given) and
   * an undici Agent whose header/body timeouts are `agentTimeoutMs` (default: `timeoutMs`);
   * non-2xx answers throw HttpStatusError.
   */
  async fetchOk(path: string, init: RequestInit & { timeoutMs?: number; agentTimeoutMs?: number }, what: string): Promise<Response> {
    const { timeoutMs, agentTimeoutMs, ...rest } = init;
    const headers = new Headers(rest.headers);
    for (const [k, v] of Object.entries(this.authHeaders())) headers.set(k, v);
    const total = timeoutMs ?? this.timeoutMs;
    // `dispatcher` is undici's extension of RequestInit, understood by Node's built-in fetch.
    const res = await fetch(this.endpoint(path), {
      ...rest,
      headers,
      signal: rest.signal ?? AbortSignal.timeout(total),
      dispatcher: this.agentFor(agentTimeoutMs ?? total),
    } as RequestInit);
    if (!res.ok) {
      let detail: string | undefined;
      try {
        const text = await res.text();
        try {
          detail = qdrantErrorText(JSON.parse(text));
        } catch {
          detail = qdrantErrorText(text);
        }
      } catch {
        detail = undefined;
      }
      throw new HttpStatusError(res.status, detail, what);
    }
    return res;
  }

  /** Server version from `GET /`. */
  async serverVersion(): Promise<string> {
    const info = await this.call('reading the server version (GET /)', (c) => c.versionInfo(), { retry: true });
    if (!info || typeof info.version !== 'string') {
      throw new AgentVaultError('QDRANT_CONNECTION', `Qdrant at ${this.url}: GET / did not return a version; is this a Qdrant server?`, { kind: 'connection' });
    }
    return info.version;
  }
}

/** Collection names as they appear in URLs. */
export function collectionPath(name: string): string {
  return `/collections/${encodeURIComponent(name)}`;
}
