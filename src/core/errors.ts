/** Where in an input a problem was found. Lines and columns are 1-based. */
export interface SourceLocation {
  file?: string;
  /** JSON Pointer (RFC 6901) into the document, '' for the root. */
  pointer?: string;
  line?: number;
  column?: number;
  /** Entry name inside an archive. */
  entry?: string;
}

/**
 * Every failure a user can cause (bad input, I/O, refused operation) is an AgentVaultError:
 * a stable `code`, a message that names what and where, and an optional hint.
 * The CLI prints `message` (never a stack) and maps `exitCode`.
 */
export class AgentVaultError extends Error {
  readonly code: string;
  readonly location?: SourceLocation;
  readonly hint?: string;
  readonly exitCode: number;

  constructor(code: string, message: string, opts: { location?: SourceLocation; hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'AgentVaultError';
    this.code = code;
    this.location = opts.location;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 1;
  }
}

export function formatLocation(loc: SourceLocation | undefined): string {
  if (!loc) return '';
  const parts: string[] = [];
  if (loc.file) parts.push(loc.file + (loc.entry ? `!${loc.entry}` : '') + (loc.line ? `:${loc.line}:${loc.column ?? 1}` : ''));
  else if (loc.entry) parts.push(loc.entry);
  else if (loc.line) parts.push(`line ${loc.line}, column ${loc.column ?? 1}`);
  if (loc.pointer !== undefined) parts.push(`at ${loc.pointer === '' ? '/' : loc.pointer}`);
  return parts.join(' ');
}

export function isAgentVaultError(e: unknown): e is AgentVaultError {
  return e instanceof AgentVaultError;
}

/** Message of any thrown value, for wrapping third-party errors. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
