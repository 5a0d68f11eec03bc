/**
 * The one context every command group runs in: output, environment, working folder and the
 * openers of what a command connects to. `main(argv, ctx)` takes it and returns the exit code;
 * the process entry point passes `processContext()`, tests pass their own (test/helpers/cli.ts).
 */
import type { SecretReader } from '../core/secrets';
import { AgentVaultError } from '../core/errors';
import { openPg, type PgSslMode } from '../db/pg';
import { openPglite } from '../db/pglite';
import type { Db } from '../db/types';
import type { StatfsFn } from '../qdrant/types';

/** How a command names a Letta database (docs/CLI.md "letta": conn). */
export interface DbConnectionOptions {
  db?: string;
  embedded?: string;
  schema?: string;
  sslMode?: string;
  sslCa?: string;
  sslCert?: string;
  sslKey?: string;
  org?: string;
}

export interface CliContext {
  stdout(s: string): void;
  stderr(s: string): void;
  /** Standard output is a terminal (colour, unless NO_COLOR). */
  stdoutIsTTY: boolean;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Opens the Letta database the options name. */
  openDb(o: DbConnectionOptions): Promise<Db>;
  /** Free disk space (Qdrant backups check it; tests inject a full disk). */
  statfs?: StatfsFn;
  /** VS Code SecretStorage when the extension runs a command; the CLI has none. */
  secrets?: SecretReader;
  /** The exit code a command sets when it ends without throwing (undefined: 0). */
  exitCode?: number;
}

/** Opens a PostgreSQL server (URL or libpq variables of `env`) or an embedded PGlite folder. */
export async function openDbFromOptions(o: DbConnectionOptions, env: NodeJS.ProcessEnv): Promise<Db> {
  if (o.embedded && o.db) throw new AgentVaultError('usage', '--db and --embedded cannot be used together', { kind: 'usage' });
  if (o.embedded) return openPglite({ dataDir: o.embedded, schema: o.schema });
  const ssl = o.sslMode || o.sslCa || o.sslCert || o.sslKey ? { mode: (o.sslMode ?? (o.sslCa ? 'verify-full' : 'require')) as PgSslMode, ca: o.sslCa, cert: o.sslCert, key: o.sslKey } : undefined;
  return openPg({ url: o.db, schema: o.schema, ssl, env });
}

/** The context of the `agent-vault` process: its streams, environment and folder. */
export function processContext(): CliContext {
  const env = process.env;
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    stdoutIsTTY: !!process.stdout.isTTY,
    env,
    cwd: process.cwd(),
    openDb: (o) => openDbFromOptions(o, env),
  };
}
