/**
 * CLI: `agent-vault qdrant list|backup|restore`. Failures are thrown as AgentVaultError and
 * mapped to exit codes by main.ts; the Qdrant codes are documented in docs/CLI.md:
 * 0 ok · 1 verification/checksum failure · 2 usage (incl. existing target without --force,
 * distributed collections and custom sharding refused)
 * · 3 connection/API failure · 4 not enough disk space · 5 restore failed and was rolled back
 * · 6 fingerprint mismatch · 8 restore failed and the rollback did not complete.
 */
import { resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { readManifest } from '../format/archive';
import { backupQdrantToArchive, listCollectionsInArchive, restoreQdrantFromArchivePath } from '../qdrant/archive';
import { inspectCollection, listServerCollections } from '../qdrant/backup';
import { QdrantConnection, resolveApiKey } from '../qdrant/connection';
import { formatBytes } from '../core/bytes';
import { usageError } from '../qdrant/errors';
import { fingerprintSha256 } from '../qdrant/fingerprint';
import type { QdrantProgress } from '../qdrant/types';
import type { CliContext } from './context';

export const QDRANT_EXIT_HELP = `
Exit codes:
  0  success
  1  verification failed (checksum of a snapshot or download, manifest, post-restore check)
  2  usage error or refusal (bad options; target collection or alias exists without --force; archive exists
     without --force; collection with shards on other cluster peers, custom sharding, restore into a multi-peer cluster)
  3  connection failure (unreachable, timeout after retries, API key refused, API error)
  4  not enough free disk space
  5  restore failed; every change was rolled back
  6  fingerprint mismatch: an existing collection's settings differ from the archive's
  8  restore failed and the rollback did not complete (the message says what to recover)

The API key is read from $QDRANT_API_KEY, or from the variable named by --api-key-env; never from the command line.`;

function positiveInt(name: string, allowZero: boolean) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || (!allowZero && n === 0)) throw new InvalidArgumentError(`${name} must be a whole number${allowZero ? ' ≥ 0' : ' > 0'}`);
    return n;
  };
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

interface ConnOpts {
  url?: string;
  apiKeyEnv?: string;
  timeout?: number;
  uploadTimeout?: number;
  retries?: number;
  quiet?: boolean;
}

function describeProgress(e: QdrantProgress): string | undefined {
  switch (e.phase) {
    case 'snapshot':
      return `snapshot ${e.snapshot} of '${e.collection}' created`;
    case 'download':
      return e.bytes !== undefined ? `downloaded '${e.collection}' (${formatBytes(e.bytes)})` : undefined;
    case 'retry':
      return `retry ${e.attempt} of ${e.what}: ${e.error}`;
    case 'safety-snapshot':
      return `safety snapshot ${e.snapshot} of '${e.collection}' taken`;
    case 'create':
      return `creating collection '${e.collection}'`;
    case 'upload':
      return `recovering '${e.collection}' from uploaded snapshot`;
    case 'rollback':
      return e.action === 'delete' ? `rollback: deleting '${e.collection}'` : `rollback: recovering '${e.collection}' from its safety snapshot`;
    case 'warning':
      return `warning: ${e.message}`;
    default:
      return undefined;
  }
}

export function registerQdrantCommands(program: Command, ctx: CliContext): void {
  const out = (s: string): void => ctx.stdout(s);
  const err = (s: string): void => ctx.stderr(s);
  const env = ctx.env;
  const deps = ctx;

  async function connect(o: ConnOpts): Promise<QdrantConnection> {
    const url = o.url ?? env.QDRANT_URL;
    if (!url) throw usageError('--url is required (or set QDRANT_URL)', 'Example: --url http://127.0.0.1:6333');
    const apiKey = await resolveApiKey({ envVar: o.apiKeyEnv, env, secrets: deps.secrets });
    return new QdrantConnection({
      url,
      apiKey,
      timeoutMs: o.timeout,
      uploadTimeoutMs: o.uploadTimeout,
      retries: o.retries,
      onProgress: (e) => {
        const line = describeProgress(e);
        if (line && (!o.quiet || e.phase === 'warning')) err(`qdrant: ${line}\n`);
      },
    });
  }

  const withConnOptions = (c: Command): Command =>
    c
      .option('--url <url>', 'Qdrant REST address, e.g. http://127.0.0.1:6333 (default: $QDRANT_URL)')
      .option('--api-key-env <name>', 'environment variable holding the API key (default: QDRANT_API_KEY)')
      .option('--timeout <ms>', 'per-request timeout incl. snapshot creation (default 300000); for snapshot downloads, the longest wait for headers or data', positiveInt('--timeout', false))
      .option(
        '--upload-timeout <ms>',
        'longest wait for a snapshot upload incl. recovery on the server, and for its outcome after an interruption (default: max(--timeout, 1 hour))',
        positiveInt('--upload-timeout', false),
      )
      .option('--retries <n>', 'extra attempts after a transient failure (default 3)', positiveInt('--retries', true))
      .option('-q, --quiet', 'print only warnings and the result');

  const qdrant = program.command('qdrant').description('Back up and restore Qdrant collections (snapshots with schema fingerprints and checksums)');
  qdrant.addHelpText('after', QDRANT_EXIT_HELP);

  withConnOptions(
    qdrant
      .command('list')
      .description('List the collections on a Qdrant server (--url) or inside a snapshot archive')
      .argument('[archive]', 'snapshot archive to list instead of a server')
      .option('--json', 'machine-readable output'),
  )
    .addHelpText('after', QDRANT_EXIT_HELP)
    .action(async (archive: string | undefined, o: ConnOpts & { json?: boolean }) => {
      if (archive) {
        const manifest = await readManifest(archive);
        const cols = listCollectionsInArchive(manifest);
        if (o.json) return out(JSON.stringify(cols, null, 2) + '\n');
        if (!cols.length) return out(`${archive}: no Qdrant collections\n`);
        for (const c of cols) {
          out(
            `${c.name}\t${c.points_count} points\tvectors: ${c.vectors.join(', ') || '-'}\tsparse: ${c.sparse_vectors.join(', ') || '-'}\tindexes: ${c.payload_indexes.join(', ') || '-'}\t${formatBytes(c.snapshot_size)}${c.has_points_export ? '\t+points' : ''}\n`,
          );
        }
        return;
      }
      const conn = await connect(o);
      try {
        const version = await conn.serverVersion();
        const rows = [];
        for (const name of await listServerCollections(conn)) {
          const c = await inspectCollection(conn, name);
          rows.push({ name, points_count: c.points_count, fingerprint_sha256: fingerprintSha256(c.fingerprint), fingerprint: c.fingerprint });
        }
        if (o.json) return out(JSON.stringify({ server_version: version, collections: rows }, null, 2) + '\n');
        err(`Qdrant ${version} at ${conn.url}\n`);
        if (!rows.length) out('(no collections)\n');
        for (const r of rows) out(`${r.name}\t${r.points_count} points\tfingerprint ${r.fingerprint_sha256.slice(0, 12)}\n`);
      } finally {
        await conn.close();
      }
    });

  withConnOptions(
    qdrant
      .command('backup')
      .description('Snapshot collections into an archive: streamed download, SHA-256, schema fingerprint, point count')
      .requiredOption('--out <archive>', 'archive to write')
      .option('--collection <name>', 'collection (or alias of one) to back up (repeatable; default: all)', collect)
      .option('--points', 'also export every point (vectors + payload) in a portable form that restores across Qdrant versions')
      .option('--keep-server-snapshots', 'do not delete the snapshots on the server after download')
      .option('--force', 'overwrite the archive if it exists'),
  )
    .addHelpText('after', QDRANT_EXIT_HELP)
    .action(async (o: ConnOpts & { out: string; collection?: string[]; points?: boolean; keepServerSnapshots?: boolean; force?: boolean }) => {
      const conn = await connect(o);
      const res = await backupQdrantToArchive(resolve(o.out), conn, {
        collections: o.collection,
        points: !!o.points,
        keepServerSnapshots: !!o.keepServerSnapshots,
        overwrite: !!o.force,
        statfs: deps.statfs,
      }).finally(() => conn.close());
      for (const c of res.qdrant.collections) {
        out(`${c.name}: ${c.points_count} points, snapshot ${formatBytes(c.snapshot_size)} sha256 ${c.snapshot_sha256}${c.points_entry ? `, ${c.points_exported} points exported` : ''}\n`);
      }
      out(`wrote ${res.path} (${formatBytes(res.bytes)}, ${res.qdrant.collections.length} collection(s), Qdrant ${res.qdrant.server_version})\n`);
    });

  withConnOptions(
    qdrant
      .command('restore')
      .description('Restore collections from an archive; all-or-nothing with rollback')
      .argument('<archive>', 'snapshot archive')
      .option('--collection <name>', 'collection in the archive to restore (repeatable; default: all)', collect)
      .option('--target-name <name>', 'restore the selected collection under this name (e.g. a staging collection)')
      .option('--force', 'replace existing collections whose settings match the archive (a safety snapshot is taken first)')
      .option('--from-points', 'restore from the portable points export (archives made with --points) instead of the snapshot')
      .option('--dry-run', 'check everything (fingerprints, checksums) and print the plan; change nothing')
      .option('--skip-checksum-verify', "skip the SHA-256 check of each snapshot against the archive's manifest before upload"),
  )
    .addHelpText('after', QDRANT_EXIT_HELP)
    .action(async (archive: string, o: ConnOpts & { collection?: string[]; targetName?: string; force?: boolean; fromPoints?: boolean; dryRun?: boolean; skipChecksumVerify?: boolean }) => {
      const conn = await connect(o);
      if (o.skipChecksumVerify) err('qdrant: warning: snapshot checksums will NOT be verified against the manifest (--skip-checksum-verify)\n');
      const res = await restoreQdrantFromArchivePath(archive, conn, {
        collections: o.collection,
        targetName: o.targetName,
        overwrite: !!o.force,
        fromPoints: !!o.fromPoints,
        dryRun: !!o.dryRun,
        skipChecksumVerify: !!o.skipChecksumVerify,
        statfs: deps.statfs,
      }).finally(() => conn.close());
      for (const i of res.items) {
        const verb = res.dryRun ? 'would restore' : 'restored';
        out(`${verb} '${i.source}' → '${i.target}' (${i.exists ? 'replacing the existing collection' : 'new collection'}, ${i.points_count} points, from ${i.method})\n`);
      }
      if (res.dryRun) out(`dry run: nothing was changed${res.checksumsVerified ? '; checksums verified' : ''}\n`);
    });
}
