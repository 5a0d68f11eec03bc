/**
 * CLI: `agent-vault agents | export | restore` against a Letta database (PostgreSQL through a
 * postgres:// URL or the libpq environment variables, or an embedded PGlite data directory).
 * Exit codes (docs/CLI.md "letta"): 0 ok · 1 verification failed (damaged archive, invalid agent
 * file) · 2 usage (bad options, unknown agent, output exists without --force) · 3 connection ·
 * 4 conflict (an agent exists and --on-conflict=fail) · 5 restore failed and was rolled back ·
 * 6 schema revision or embedding mismatch refused · 7 the connection was lost at COMMIT and the
 * outcome could not be determined · 74 I/O error (disk full…) · 130/143 interrupted.
 */
import { readdirSync, rmSync } from 'node:fs';
import * as nodePath from 'node:path';
import { KIND_EXIT, REMEDY_HINT, onInterrupt } from './exit';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { AgentVaultError } from '../core/errors';
import { isTempNameOf } from '../core/fs';
import type { Db } from '../db/types';
import { createLettaSchemaIfEmpty, LETTA_HEAD_REVISION } from '../letta/ddl';
import { exportAgents, listAgents, type AgentListing } from '../letta/export';
import { formatPlan, restoreAgents, type OnConflict, type RestoreOptions, type RestoreSource, type ToolsMode } from '../letta/restore';
import { addKeyOptions, decryptFromFlags, encryptionFromFlags, type KeyFlags } from './keys';
import { resolveArchiveArg } from './remote-archive';
import { storeArchiveArg } from './store';
import type { CliContext, DbConnectionOptions } from './context';

export const LETTA_EXIT = { ok: 0, verification: 1, usage: 2, connection: 3, conflict: 4, rolledBack: 5, mismatch: 6, commitUnknown: 7, io: 74 } as const;

export const LETTA_EXIT_HELP = `
Exit codes:
  0  success
  1  verification failed: a damaged archive entry (checksum), an invalid agent file, or a wrong
     passphrase/key for an encrypted archive; nothing was changed
  2  usage error: bad options, unknown agent, output file exists without --force, an encrypted
     archive without --passphrase-env / --passphrase-file / --key-file
  3  connection failure: the database is unreachable, refused the login, or the connection was lost
     (a restore in progress is rolled back by the server; lost at COMMIT: a new connection
     confirmed the rollback)
  4  conflict: an agent already exists and --on-conflict=fail; nothing was changed
  5  restore failed while writing and was rolled back; nothing was changed
  6  refused: Letta schema revision or embedding model/dimension mismatch (see --force-schema,
     --allow-embedding-mismatch); nothing was changed
  7  the connection was lost at COMMIT and whether the restore committed could not be determined
     (the message names the transaction id to look up with txid_status)
 74  I/O error: a file could not be read or written (disk full, permission denied)
 130/143  interrupted by SIGINT/SIGTERM (export: its temp file is removed)

Connection: --db postgres://user:pass@host:port/db, or the libpq variables PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT; or --embedded <dir> for a PGlite database.`;

type ConnOpts = DbConnectionOptions;

const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];
const CONNECTION_CODES = new Set(['db-connect', 'db-connection-lost', 'db-open', 'db-closed', 'db-ssl-file']);

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

function addConnectionOptions(c: Command): Command {
  return c
    .option('--db <url>', 'postgres:// URL of the Letta database (default: the libpq PG* environment variables)')
    .option('--embedded <dir>', 'use the embedded PGlite database in this directory instead of a server')
    .option('--schema <name>', "schema that holds Letta's tables", 'letta')
    .addOption(new Option('--ssl-mode <mode>', 'TLS: disable, prefer, require, verify-ca or verify-full (default: from the URL or PGSSLMODE)').choices(SSL_MODES))
    .option('--ssl-ca <file>', 'CA certificate (PEM) for verify-ca / verify-full')
    .option('--ssl-cert <file>', 'client certificate (PEM)')
    .option('--ssl-key <file>', 'client key (PEM)')
    .option('--org <id>', "organization: only its agents (agents, export), or where to restore (default: Letta's default organization)");
}

/** Re-labels driver/connection failures with exit code 3; other errors pass unchanged. */
function withExitCodes(e: unknown): unknown {
  if (e instanceof AgentVaultError) {
    if (e.code === 'db-bad-url' || e.code === 'db-bad-sslmode' || e.code === 'db-bad-identifier') {
      return e.as('usage');
    }
    if (CONNECTION_CODES.has(e.code)) return e.as('connection');
  }
  return e;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function renderAgents(agents: AgentListing[]): string {
  if (agents.length === 0) return 'No agents.\n';
  const head = ['NAME', 'ID', 'TYPE', 'MESSAGES', 'IN CONTEXT', 'PASSAGES', 'BLOCKS', 'TOOLS', 'LLM', 'EMBEDDING', 'UPDATED'];
  const rows = agents.map((a) => [
    a.name ?? '(unnamed)',
    a.id,
    a.agent_type ?? '',
    String(a.messages),
    String(a.in_context_messages),
    String(a.passages),
    String(a.blocks),
    String(a.tools),
    a.llm_model ?? '',
    a.embedding_model ? `${a.embedding_model}${a.embedding_dim ? ` (${a.embedding_dim})` : ''}` : '',
    a.last_updated ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return (
    [head, ...rows]
      .map((r) =>
        r
          .map((c, i) => pad(c, widths[i]))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function choice<T extends string>(name: string, allowed: readonly T[]) {
  return (v: string): T => {
    if (!(allowed as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${allowed.join(', ')}`);
    return v as T;
  };
}

export function registerLettaCommands(program: Command, ctx: CliContext): void {
  const out = (s: string): void => ctx.stdout(s);
  const err = (s: string): void => ctx.stderr(s);
  const open = (o: ConnOpts): Promise<Db> => ctx.openDb(o);

  async function withDb<T>(o: ConnOpts, fn: (db: Db) => Promise<T>): Promise<T> {
    let db: Db | undefined;
    try {
      db = await open(o);
      return await fn(db);
    } catch (e) {
      throw withExitCodes(e);
    } finally {
      await db?.close().catch(() => undefined);
    }
  }

  addConnectionOptions(program.command('agents').description('List the agents in a Letta database with their message, passage, block and tool counts').option('--json', 'print JSON'))
    .addHelpText('after', LETTA_EXIT_HELP)
    .action(async (o: ConnOpts & { json?: boolean }) => {
      const agents = await withDb(o, (db) => listAgents(db, { organizationId: o.org }));
      out(o.json ? JSON.stringify(agents, null, 2) + '\n' : renderAgents(agents));
    });

  addKeyOptions(
    addConnectionOptions(
      program
        .command('export')
        .description('Export agents (all their messages, archival passages with embeddings, blocks, tools, groups, files) into a snapshot archive, from one consistent snapshot')
        .requiredOption('-o, --out <archive>', 'archive to write')
        .option('-a, --agent <id|name>', 'an agent to export, by id or name (repeatable)', collect)
        .option('-t, --tag <tag>', 'export the agents with this tag (repeatable)', collect)
        .option('--all', 'export every agent')
        .option('-f, --force', 'overwrite the archive if it exists')
        .option('--encrypt', "write the archive encrypted (key from --passphrase-env, --passphrase-file or --key-file), with the agents' secret values inside")
        .option('--no-secrets', 'with --encrypt: leave the secret values out (redacted, as in a plain archive)')
        .option('--json', 'print the manifest as JSON')
        .option('-q, --quiet', 'no progress messages'),
    ),
  )
    .addHelpText('after', LETTA_EXIT_HELP)
    .action(
      async (o: ConnOpts & KeyFlags & { out: string; agent?: string[]; tag?: string[]; all?: boolean; force?: boolean; encrypt?: boolean; secrets?: boolean; json?: boolean; quiet?: boolean }) => {
        const wanted = o.agent ?? [];
        if (!o.all && wanted.length === 0 && !o.tag?.length) throw new AgentVaultError('usage', 'say which agents to export: --agent <id|name>, --tag <tag> or --all', { kind: 'usage' });
        const encryption = o.encrypt ? await encryptionFromFlags(o, ctx.env) : undefined;
        // interrupted (SIGINT/SIGTERM/SIGHUP): remove the archive writer's temp file of this run
        const outDir = nodePath.dirname(nodePath.resolve(o.out));
        const listTemps = (): string[] => {
          try {
            return readdirSync(outDir).filter((n) => isTempNameOf(n, nodePath.basename(o.out)));
          } catch {
            return [];
          }
        };
        const before = new Set(listTemps());
        const offInterrupt = onInterrupt('export', () => {
          for (const n of listTemps()) if (!before.has(n)) rmSync(nodePath.join(outDir, n), { force: true });
        });
        const res = await withDb(o, (db) =>
          exportAgents(db, {
            // an --agent value matches an id or a name
            select: { refs: wanted, tags: o.tag, all: o.all },
            organizationId: o.org,
            out: o.out,
            overwrite: o.force,
            encryption,
            secrets: o.secrets !== false,
            lettaEncryptionKey: ctx.env.LETTA_ENCRYPTION_KEY || undefined,
            onProgress: (e) => {
              if (o.quiet) return;
              if (e.phase === 'agent') err(`exporting ${e.index}/${e.total}: ${e.name ?? e.agentId}\n`);
              else if (e.phase === 'warning') err(`warning: ${e.message}\n`);
            },
          }),
        ).finally(offInterrupt);
        if (o.json) {
          out(JSON.stringify({ path: res.path, bytes: res.bytes, manifest: res.manifest, warnings: res.warnings }, null, 2) + '\n');
          return;
        }
        const m = res.manifest;
        const msgs = m.agents.reduce((n, a) => n + a.counts.messages, 0);
        const pas = m.agents.reduce((n, a) => n + a.counts.passages, 0);
        const secrets = encryption
          ? res.secrets
            ? `Encrypted, with ${res.secrets} secret value${res.secrets === 1 ? '' : 's'} inside.`
            : o.secrets === false
              ? 'Encrypted; secret values are redacted.'
              : 'Encrypted.'
          : 'Secret values are redacted.';
        out(
          `Exported ${m.agents.length} agent${m.agents.length === 1 ? '' : 's'} (${msgs} messages, ${pas} passages) to ${res.path} (${res.bytes} bytes); Letta revision ${m.source?.letta_revision}, pgvector ${m.source?.pgvector_version ?? 'none'}. ${secrets}\n`,
        );
      },
    );

  addKeyOptions(
    addConnectionOptions(
      program
        .command('restore')
        .description('Restore agents from a snapshot archive or an agent file (.af v1/v2) into a Letta database, in one transaction')
        .argument('<source>', 'snapshot archive or .af file')
        .option('-a, --agent <id|name>', 'restore only this agent (repeatable)', collect)
        .option('--on-conflict <mode>', 'when an agent exists: fail, skip, replace or copy', choice<OnConflict>('--on-conflict', ['fail', 'skip', 'replace', 'copy']), 'fail')
        .option('--tools <mode>', 'tools that exist by name: keep them or replace them with the archived version', choice<ToolsMode>('--tools', ['keep', 'replace']), 'keep')
        .option('--dry-run', 'print the plan and change nothing')
        .option('--force-schema', 'restore even if the Letta schema revisions are not compatible')
        .option('--allow-embedding-mismatch', "restore passages even if their embedding model/dimension differs from the target's")
        .option('--user <id>', "acting user written to _created_by_id (default: Letta's default user)")
        .option('--name-suffix <suffix>', 'suffix for copies (--on-conflict=copy)', '_copy')
        .option('--new-ids', 'give every restored object a new id (conflicts are then by agent name)')
        .option('--no-secrets', "an encrypted archive's secret values are not written (restored redacted, as from a plain archive)")
        .option('--json', 'print the plan (and the result) as JSON')
        .option('-q, --quiet', 'print only the summary'),
    ),
  )
    .addHelpText('after', LETTA_EXIT_HELP)
    .action(
      async (
        source: string,
        o: ConnOpts &
          KeyFlags & {
            secrets?: boolean;
            agent?: string[];
            onConflict: OnConflict;
            tools: ToolsMode;
            dryRun?: boolean;
            forceSchema?: boolean;
            allowEmbeddingMismatch?: boolean;
            user?: string;
            nameSuffix?: string;
            newIds?: boolean;
            json?: boolean;
            quiet?: boolean;
          },
      ) => {
        // a store vault's snapshot (`<vault>#<snapshot>`) is read in place from the store, opened by the restore
        const inPlace = await storeArchiveArg(source);
        const decrypt = await decryptFromFlags(o, ctx.env);
        const src: RestoreSource = inPlace ? { open: () => inPlace.open(decrypt) } : await resolveArchiveArg(source);
        const opts: RestoreOptions = {
          agents: o.agent,
          onConflict: o.onConflict,
          tools: o.tools,
          dryRun: o.dryRun,
          forceSchema: o.forceSchema,
          allowEmbeddingMismatch: o.allowEmbeddingMismatch,
          organizationId: o.org,
          userId: o.user,
          nameSuffix: o.nameSuffix,
          newIds: o.newIds,
          decrypt,
          secrets: o.secrets !== false,
        };
        if (o.dryRun) {
          const res = await withDb(o, (db) => restoreAgents(db, src, opts));
          out(o.json ? JSON.stringify(res.plan, null, 2) + '\n' : formatPlan(res.plan));
          // a dry run exits as the real run would: refused plans are not a success
          const refusal = res.plan.refusals[0];
          if (refusal) ctx.exitCode = KIND_EXIT[refusal.kind];
          for (const r of new Set(res.plan.refusals.map((x) => x.remedy))) err(`hint: ${REMEDY_HINT[r]}\n`);
          return;
        }
        let commitNote: string | null = null;
        let schemaCreated: string | null = null;
        const res = await withDb(o, async (db) => {
          // a new or empty embedded database gets Letta's schema first (a server's database has it)
          if (o.embedded && (await createLettaSchemaIfEmpty(db, { schema: o.schema }))) {
            schemaCreated = `created Letta's schema "${o.schema ?? 'letta'}" at revision ${LETTA_HEAD_REVISION} (with the default organization and user) in the new embedded database ${o.embedded}`;
            err(`agent-vault: note: ${schemaCreated}\n`);
          }
          const r = await restoreAgents(db, src, opts);
          const lc = (db as { lastCommit?: { connectionLost: boolean; outcome: string; detail: string; txid: string } | null }).lastCommit;
          if (lc?.connectionLost && lc.outcome === 'committed') commitNote = `the connection was lost at COMMIT; ${lc.detail}: the restore is complete`;
          return r;
        });
        if (commitNote) err(`agent-vault: note: ${commitNote}\n`);
        if (o.json) {
          out(JSON.stringify({ plan: res.plan, agent_ids: res.agentIds, rows: res.rows, schema_created: schemaCreated !== null }, null, 2) + '\n');
          return;
        }
        if (!o.quiet) out(formatPlan(res.plan));
        if (schemaCreated) out(`Created Letta's schema at revision ${LETTA_HEAD_REVISION} in ${o.embedded} first.\n`);
        const n = Object.keys(res.agentIds).length;
        out(`Restored ${n} agent${n === 1 ? '' : 's'} (${res.rows.messages ?? 0} messages, ${res.rows.archival_passages ?? 0} passages) in one transaction.\n`);
      },
    );
}
