/**
 * What kind of failure an error is: the one thing a front end needs to decide how to report it.
 * The CLI maps each kind to its exit code (src/cli/exit.ts, docs/CLI.md "Exit codes"); the library
 * never deals in exit numbers.
 */
export type ErrorKind =
  /** the operation ran and found or reported a failure: verification, an invalid input file… */
  | 'failed'
  /** usage or configuration: bad options, unknown name, missing key, output exists, no such input */
  | 'usage'
  /** a server is unreachable, refused the login, or the connection was lost (nothing committed) */
  | 'connection'
  /** refused before any change: an agent exists, not enough free disk space */
  | 'conflict'
  /** failed while writing and rolled back; nothing was changed */
  | 'rolledBack'
  /** refused: schema revision, embedding model/dimension or collection settings do not match */
  | 'mismatch'
  /** the connection was lost at COMMIT and whether the transaction committed is unknown */
  | 'commitUnknown'
  /** a restore failed and its rollback did not complete: recovery by hand */
  | 'rollbackIncomplete'
  /** a read or write failed: disk full, permission denied, read-only file system */
  | 'io'
  /** another run holds the vault lock */
  | 'locked'
  /** a bug */
  | 'internal';

/** The stable codes of AgentVaultError (one per kind of problem, grouped by layer). */
export type ErrorCode =
  // usage and configuration
  | 'aborted'
  | 'agent-not-found'
  | 'backup-failed'
  | 'closed'
  | 'config'
  | 'drill'
  | 'exists'
  | 'export-no-selection'
  | 'internal'
  | 'interrupted'
  | 'locked'
  | 'no-agent'
  | 'no-connection'
  | 'no-key'
  | 'no-snapshot'
  | 'no-store'
  | 'no-vault'
  | 'probes'
  | 'restore-target'
  | 'scratch-not-empty'
  | 'synth-bad-option'
  | 'usage'
  // files and I/O
  | 'disk-full'
  | 'empty'
  | 'encoding'
  | 'io'
  | 'too-large'
  | 'write-failed'
  // agent files and archives (docs/FORMAT.md)
  | 'af-upgrade'
  | 'checksum'
  | 'corrupt'
  | 'entry-name'
  | 'format-version'
  | 'invalid-agent-file'
  | 'invalid-archive'
  | 'invalid-json'
  | 'json-syntax'
  | 'manifest'
  | 'merge-conflict'
  | 'missing-entry'
  | 'not-archive'
  | 'plaintext-secret'
  | 'schema-invalid'
  | 'schema-missing'
  | 'tampered'
  | 'truncated'
  | 'unknown-format'
  | 'vector-bad-text'
  | 'vector-bad-value'
  | 'vector-dim'
  | 'vector-format'
  | 'vector-parse'
  // encryption
  | 'decrypt'
  | 'encrypted'
  | 'encryption'
  | 'not-encrypted'
  | 'unsupported-encryption'
  | 'wrong-key'
  // databases
  | 'db-auth'
  | 'db-bad-batch-size'
  | 'db-bad-identifier'
  | 'db-bad-isolation'
  | 'db-bad-sslmode'
  | 'db-bad-url'
  | 'db-closed'
  | 'db-commit-unknown'
  | 'db-connect'
  | 'db-connection-lost'
  | 'db-nested-call'
  | 'db-no-pgvector'
  | 'db-open'
  | 'db-pgvector-elsewhere'
  | 'db-ssl-file'
  | 'db-tx-aborted'
  | 'db-tx-finished'
  // Letta mapping, export and restore
  | 'embedding-mismatch'
  | 'export-inconsistent'
  | 'letta-not-found'
  | 'letta-schema-mismatch'
  | 'dangling-reference'
  | 'restore-conflict'
  | 'restore-invalid'
  | 'restore-write-failed'
  | 'revision-mismatch'
  // the vault, its store and remote copies
  | 'missing-blob'
  | 's3-auth'
  | 's3-io'
  | 's3-no-bucket'
  | 's3-no-conditional-put'
  | 'store-damaged'
  | 'store-format'
  | 'store-not-encrypted'
  | 'vault-index'
  // Qdrant
  | 'QDRANT_BAD_RESPONSE'
  | 'QDRANT_CLUSTER'
  | 'QDRANT_CONNECTION'
  | 'QDRANT_DISK'
  | 'QDRANT_FINGERPRINT_MISMATCH'
  | 'QDRANT_MANIFEST'
  | 'QDRANT_POINTS_FORMAT'
  | 'QDRANT_POINT_ID'
  | 'QDRANT_RESTORE_ROLLED_BACK'
  | 'QDRANT_ROLLBACK_FAILED'
  | 'QDRANT_TARGET_EXISTS'
  | 'QDRANT_TRANSFER_CHECKSUM'
  | 'QDRANT_USAGE'
  | 'QDRANT_VERIFICATION';

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
 * A remedy a front end phrases in its own terms (the CLI names its flag, the extension its choice):
 * library messages never name a command-line flag.
 */
export type ErrorRemedy =
  /** allow overwriting the output (CLI: --force) */
  | 'overwrite'
  /** give the passphrase or key the archive was written with (CLI: --passphrase-env / --passphrase-file / --key-file) */
  | 'key'
  /** choose what to do with agents that exist in the target (CLI: --on-conflict skip|replace|copy) */
  | 'on-conflict'
  /** restore across schema revisions anyway (CLI: --force-schema) */
  | 'force-schema'
  /** restore into a target whose embedding model differs (CLI: --allow-embedding-mismatch) */
  | 'allow-embedding-mismatch'
  /** wait for the run that holds the vault lock to finish (CLI: --wait <seconds>) */
  | 'wait'
  /** write the archive encrypted (CLI: --encrypt) */
  | 'encrypt'
  /** name the schema that holds Letta's tables (CLI: --schema) */
  | 'schema'
  /** say which agents (CLI: --agent, --tag or --all) */
  | 'select-agents'
  /** name the vault configuration file (CLI: --config) */
  | 'config'
  /** name the vault folder (CLI: --vault) */
  | 'vault'
  /** Qdrant: replace the existing collections, after a safety snapshot (CLI: --force), or restore under another name */
  | 'replace-collections'
  /** Qdrant: re-point an alias that points elsewhere (CLI: --force) */
  | 'repoint-alias'
  /** Qdrant: restore into a new collection (CLI: --target-name) */
  | 'target-name'
  /** Qdrant: skip the snapshot checksum, at the user's risk (CLI: --skip-checksum-verify) */
  | 'skip-checksum'
  /** Qdrant: back up without the portable points export (CLI: without --points) */
  | 'without-points'
  /** Qdrant: restore from the snapshot, not the points export (CLI: without --from-points) */
  | 'from-snapshot'
  /** Qdrant: allow more time or attempts (CLI: --timeout, --retries) */
  | 'more-time'
  /** Qdrant: check the API key (CLI: QDRANT_API_KEY or --api-key-env) */
  | 'api-key'
  /** Qdrant: put the API key in the environment variable named for it, or name none (CLI: --api-key-env) */
  | 'api-key-env'
  /** Qdrant: give the server's address as an http(s) URL (CLI: --url) */
  | 'qdrant-url'
  /** Qdrant: a per-request timeout in milliseconds within the timer range (CLI: --timeout) */
  | 'qdrant-timeout'
  /** Qdrant: a snapshot upload timeout in milliseconds within the timer range (CLI: --upload-timeout) */
  | 'qdrant-upload-timeout'
  /** Qdrant: a whole number of retries (CLI: --retries) */
  | 'qdrant-retries'
  /** Qdrant: restoring under another name takes exactly one collection (CLI: --collection with --target-name) */
  | 'select-collection'
  /** give at least one retention rule, each a count ≥ 0 (CLI: --keep-last … --keep-yearly, or "retention" in the config) */
  | 'retention'
  /** check the vault, reading its data (CLI: agent-vault verify --vault <dir> [--read-data]) */
  | 'verify-vault'
  /** write a store snapshot as a single-file archive (CLI: agent-vault vault export <snapshot> --vault <dir> -o <file>) */
  | 'export-snapshot'
  /** rebuild the vault index from the snapshot archives (CLI: agent-vault rebuild-index) */
  | 'rebuild-index'
  /** a first backup creates the vault (CLI: agent-vault backup --config) */
  | 'create-vault'
  /** list the vault's snapshots (CLI: agent-vault status --snapshots) */
  | 'list-snapshots'
  /** make a store vault, or import a vault's archives into one (CLI: agent-vault vault init --store, vault migrate) */
  | 'init-store';

export interface AgentVaultErrorOptions {
  /** default 'failed' */
  kind?: ErrorKind;
  location?: SourceLocation;
  hint?: string;
  /** what the user can do about it, worded by the front end */
  remedy?: ErrorRemedy | readonly ErrorRemedy[];
  cause?: unknown;
}

/**
 * Every failure a user can cause (bad input, I/O, refused operation) is an AgentVaultError:
 * a stable `code`, a `kind` (how a front end reports it), a message that names what and where,
 * an optional hint, and an optional remedy the front end words itself.
 * The CLI prints `message` (never a stack) and maps `kind` to its exit code.
 */
export class AgentVaultError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly location?: SourceLocation;
  readonly hint?: string;
  readonly remedies: readonly ErrorRemedy[];

  constructor(code: ErrorCode, message: string, opts: AgentVaultErrorOptions = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'AgentVaultError';
    this.code = code;
    this.kind = opts.kind ?? 'failed';
    this.location = opts.location;
    this.hint = opts.hint;
    this.remedies = opts.remedy === undefined ? [] : typeof opts.remedy === 'string' ? [opts.remedy] : [...opts.remedy];
  }

  /** The same error as another kind (a front end's own classification), keeping code, message and cause. */
  as(kind: ErrorKind): AgentVaultError {
    if (kind === this.kind) return this;
    return new AgentVaultError(this.code, this.message, { kind, location: this.location, hint: this.hint, remedy: this.remedies, cause: this });
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
