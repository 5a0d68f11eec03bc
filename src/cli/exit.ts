import { AgentVaultError, type ErrorKind, type ErrorRemedy } from '../core/errors';

/**
 * The one exit-code table of every agent-vault command (docs/CLI.md "Exit codes"). A code means
 * the same thing whichever command returns it; I/O errors never share a code with usage errors.
 */
export const EXIT = {
  /** success */
  ok: 0,
  /** the command ran and found or reported a failure: verification failed, a drill failed, a backup failed, invalid input file */
  failed: 1,
  /** usage or configuration: bad options, unknown name, missing key, output exists, no such input file */
  usage: 2,
  /** connection: a server is unreachable, refused the login, or the connection was lost (the transaction did not commit) */
  connection: 3,
  /** refused before any change: an agent exists (--on-conflict=fail), or not enough free disk space for a Qdrant backup */
  conflict: 4,
  /** failed while writing and rolled back; nothing was changed */
  rolledBack: 5,
  /** refused: schema revision, embedding model/dimension or collection settings do not match */
  mismatch: 6,
  /** the connection was lost at COMMIT and whether the transaction committed could not be determined */
  commitUnknown: 7,
  /** a Qdrant restore failed and its rollback did not complete */
  rollbackIncomplete: 8,
  /** internal error (a bug: please report it) */
  internal: 70,
  /** I/O error: a read or write failed (disk full, permission denied, read-only file system…) */
  io: 74,
  /** another run holds the vault lock: try again later (EX_TEMPFAIL) */
  locked: 75,
  /** interrupted by SIGINT */
  sigint: 130,
  /** interrupted by SIGTERM */
  sigterm: 143,
} as const;

/** The exit code of each kind of error (src/core/errors.ts ErrorKind): the CLI's one mapping. */
export const KIND_EXIT: Readonly<Record<ErrorKind, number>> = {
  failed: EXIT.failed,
  usage: EXIT.usage,
  connection: EXIT.connection,
  conflict: EXIT.conflict,
  rolledBack: EXIT.rolledBack,
  mismatch: EXIT.mismatch,
  commitUnknown: EXIT.commitUnknown,
  rollbackIncomplete: EXIT.rollbackIncomplete,
  io: EXIT.io,
  locked: EXIT.locked,
  internal: EXIT.internal,
};

/** The exit code of a thrown value: an AgentVaultError's kind, anything else is a bug (70). */
export function exitCodeOf(e: unknown): number {
  return e instanceof AgentVaultError ? KIND_EXIT[e.kind] : EXIT.internal;
}

/** How the CLI words each remedy an error names: the flag that applies it. */
export const REMEDY_HINT: Readonly<Record<ErrorRemedy, string>> = {
  overwrite: 'pass --force to overwrite it',
  key: 'pass --passphrase-env NAME, --passphrase-file FILE or --key-file FILE (the passphrase or key it was written with)',
  'on-conflict': 'choose --on-conflict=skip, replace or copy',
  'force-schema': 'pass --force-schema to restore anyway',
  'allow-embedding-mismatch': 'pass --allow-embedding-mismatch to restore anyway',
  wait: 'wait for it to finish (--wait <seconds>)',
  encrypt: 'write an encrypted archive (--encrypt)',
  schema: 'point --schema at the schema Letta uses (default "letta")',
  'select-agents': 'use --agent <id|name>, --tag <tag> or --all',
  config: 'pass --config <file>',
  vault: 'name the vault with --vault <dir>',
  'replace-collections': 'Pass --force to replace them (a safety snapshot is taken first and recovered if the restore fails), or use --target-name.',
  'repoint-alias': 'Pass --force to re-point it (rolled back if the restore fails).',
  'target-name': 'Restore into a new collection with --target-name <name>, or delete/recreate the collection first.',
  'skip-checksum': 'Use another backup (or --skip-checksum-verify at your own risk).',
  'without-points': 'Back up this collection without --points.',
  'from-snapshot': 'Restore from the snapshot (omit --from-points).',
  'more-time': 'Raise --timeout or --retries.',
  'api-key': 'Check the API key (environment variable QDRANT_API_KEY or the one named by --api-key-env).',
  'api-key-env': 'Export the Qdrant API key in the variable named by --api-key-env, or omit --api-key-env (default QDRANT_API_KEY).',
  'qdrant-url': 'Give the server with --url, e.g. --url http://127.0.0.1:6333 (or set QDRANT_URL).',
  'qdrant-timeout': `Set --timeout <ms> to a whole number of milliseconds from 1 to ${2 ** 31 - 1}.`,
  'qdrant-upload-timeout': `Set --upload-timeout <ms> to a whole number of milliseconds from 1 to ${2 ** 31 - 1}.`,
  'qdrant-retries': 'Set --retries <n> to a whole number ≥ 0.',
  'select-collection': '--target-name restores one collection: select it with --collection <name>.',
  retention: 'pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly (or set "retention" in the config)',
  'rebuild-index': 'rebuild the index from the snapshot archives with "agent-vault rebuild-index --vault <dir>"',
  'create-vault': 'a first "agent-vault backup --config <file>" creates the vault',
  'list-snapshots': 'list them with "agent-vault status --snapshots --vault <dir>" (a store vault also: "agent-vault vault snapshots --vault <dir>")',
  'verify-vault': 'check the vault, reading every pack, with "agent-vault verify --read-data --vault <dir>"',
  'export-snapshot': 'write a store snapshot as a single-file archive with "agent-vault vault export <snapshot> --vault <dir> -o <file>"',
  'init-store':
    'make a store vault with "agent-vault vault init --store --vault <dir>" (with --encrypt for encrypted snapshots), or import a vault\'s archives into one with "agent-vault vault migrate --vault <dir>"',
};

/** The hint lines the CLI prints under an error's message: its remedy in CLI terms, then its own hint. */
export function errorHints(e: AgentVaultError): string[] {
  const out: string[] = [];
  for (const r of e.remedies) out.push(REMEDY_HINT[r]);
  if (e.hint) out.push(e.hint);
  return out;
}

/** The exit code of an interrupting signal (128 + its number). */
export function signalExitCode(sig: NodeJS.Signals): number {
  return sig === 'SIGINT' ? EXIT.sigint : sig === 'SIGTERM' ? EXIT.sigterm : sig === 'SIGHUP' ? 129 : 128 + 15;
}

/**
 * Runs `cleanup` (synchronously) when SIGINT, SIGTERM or SIGHUP arrives, prints one line and exits
 * with 128 + the signal number. Returns a function that removes the handlers.
 */
export function onInterrupt(what: string, cleanup: (sig: NodeJS.Signals) => void): () => void {
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const handler = (sig: NodeJS.Signals): void => {
    try {
      cleanup(sig);
    } finally {
      process.stderr.write(`agent-vault: ${what} interrupted by ${sig}\n`);
      process.exit(signalExitCode(sig));
    }
  };
  for (const s of sigs) process.once(s, handler);
  return () => {
    for (const s of sigs) process.off(s, handler);
  };
}
