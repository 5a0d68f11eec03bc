/**
 * CLI: vault operations — backup, prune, verify, drill, status, rebuild-index (docs/VAULT.md).
 *
 * Cron-friendly: `backup` prints nothing on success (unless -v / --json) and exactly one line on
 * failure. Exit codes (docs/CLI.md, ./exit.ts): 0 ok; 1 failed (backup failed, verify or prune
 * found a damaged snapshot, drill failed); 2 usage or configuration error; 74 I/O error (disk
 * full…); 75 the vault is locked by another run (try again later); 130/143 interrupted.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { AgentVaultError, errorMessage } from '../core/errors';
import { DEFAULT_CONFIG_FILE, decryptOptions, loadConfig, resolveKeyMaterial, type KeySources, type VaultConfig } from '../vault/config';
import { runBackup, type BackupResult } from '../vault/backup';
import { pruneVault } from '../vault/prune';
import { describeReasons, type RetentionPolicy } from '../vault/retention';
import { verifyVault, type SnapshotVerifyResult } from '../vault/verify';
import { runDrill } from '../vault/drill';
import { renderStatus, vaultStatus } from '../vault/status';
import { readIndex } from '../vault/vault';
import { rebuildIndex } from '../vault/reconcile';
import { rebuildRemoteIndex } from '../vault/remote/reconcile';
import { copyVault, readStoreIndex } from '../vault/remote/copy';
import { isS3Location } from '../vault/remote/location';
import { fetchSnapshot, pruneRemote, remoteVaultStatus, runRemoteBackup, verifyRemote } from '../vault/remote/remote-vault';
import { openObjectStore, S3Store } from '../vault/remote/s3';
import { EXIT, errorHints, exitCodeOf, onInterrupt, signalExitCode } from './exit';
import type { CliContext } from './context';
import { isStoreLocation, storeStatusFor, registerStoreCommands, storeBackupCommand, storeCopyCommand, storePruneCommand, storeVerifyCommand } from './store';

/** Calls `fn` on SIGINT / SIGTERM / SIGHUP (instead of exiting); returns the function that stops listening. */
function onSignal(fn: (sig: NodeJS.Signals) => void): () => void {
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const x of sigs) process.on(x, fn);
  return () => {
    for (const x of sigs) process.off(x, fn);
  };
}

export const EXIT_LOCKED = EXIT.locked;

/** The exit code of a vault command's error (its kind's, ./exit.ts); a failure that is not an AgentVaultError: 1. */
function vaultExitCode(e: unknown): number {
  return e instanceof AgentVaultError ? exitCodeOf(e) : EXIT.failed;
}

interface VaultSelection {
  config?: string;
  vault?: string;
}

interface KeyFlags {
  passphraseFile?: string;
  passphraseEnv?: string;
  keyFile?: string;
}

function intArg(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new AgentVaultError('usage', `${name} must be a non-negative integer, got "${v}"`, { kind: 'usage' });
    return Number(v);
  };
}

function numArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new AgentVaultError('usage', `${name} must be a non-negative number, got "${v}"`, { kind: 'usage' });
    return n;
  };
}

/** A folder is made absolute (against the command's folder); an s3:// location stays as written. */
function resolveVault(ctx: CliContext, v: string): string {
  return isS3Location(v) ? v : path.resolve(ctx.cwd, v);
}

/** The config (when there is one) and the vault folder: --vault, else --config, else ./agent-vault.json. */
async function selectVault(ctx: CliContext, o: VaultSelection): Promise<{ cfg?: VaultConfig; vault: string }> {
  const defaultConfig = path.resolve(ctx.cwd, DEFAULT_CONFIG_FILE);
  if (o.config || (!o.vault && existsSync(defaultConfig))) {
    const cfg = await loadConfig(o.config ? path.resolve(ctx.cwd, o.config) : defaultConfig);
    return { cfg, vault: o.vault ? resolveVault(ctx, o.vault) : cfg.vault };
  }
  if (o.vault) return { vault: resolveVault(ctx, o.vault) };
  throw new AgentVaultError('usage', `no vault given: pass --vault <dir> or --config <file> (or run where ${DEFAULT_CONFIG_FILE} is)`, { kind: 'usage' });
}

function keySources(ctx: CliContext, o: KeyFlags): KeySources {
  return { passphraseFile: o.passphraseFile, passphraseEnv: o.passphraseEnv, keyFile: o.keyFile, env: ctx.env, secrets: ctx.secrets };
}

function addVaultOptions(c: Command): Command {
  return c.option('-c, --config <file>', `vault configuration (default: ./${DEFAULT_CONFIG_FILE})`).option('--vault <dir>', 'the vault folder (instead of, or overriding, the configuration)');
}

function addKeyOptions(c: Command): Command {
  return c
    .option('--passphrase-file <file>', 'read the passphrase from this file')
    .option('--passphrase-env <NAME>', 'read the passphrase from this environment variable (default AGENT_VAULT_PASSPHRASE)')
    .option('--key-file <file>', 'use this 32-byte key file instead of a passphrase');
}

async function withStore<T>(location: string, fn: (store: S3Store) => Promise<T>): Promise<T> {
  const store = new S3Store(location);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Prints a vault command's error (and its hints) and sets the exit code from the one table; anything else is a bug. */
function reportVaultError(ctx: CliContext, e: unknown, prefix = ''): void {
  if (!(e instanceof AgentVaultError)) throw e;
  ctx.stderr(`agent-vault: ${prefix}${oneLine(e.message)}\n`);
  if (e.code !== 'locked') for (const h of errorHints(e)) ctx.stderr(`hint: ${h}\n`);
  ctx.exitCode = vaultExitCode(e);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

export function registerVaultCommands(program: Command, ctx: CliContext): void {
  const out = (s: string): void => ctx.stdout(s);
  const err = (s: string): void => ctx.stderr(s);

  // ------------------------------------------------------------------------------------------- backup
  const backup = program
    .command('backup')
    .description('Back up the configured agents (and Qdrant collections) into a new snapshot in the vault')
    .requiredOption('-c, --config <file>', 'vault configuration (schemas/vault-config.schema.json)')
    .option('--encrypt', 'encrypt the snapshot (also: "encryption.enabled" in the configuration)')
    .option('--full', 'store vaults: read every agent from the database, copying none unchanged from the parent snapshot')
    .option('--wait <seconds>', 'wait this long for a running backup instead of refusing', numArg('--wait'))
    .option('-v, --verbose', 'print progress to stderr and a summary to stdout')
    .option('--json', 'print the result as JSON');
  addKeyOptions(backup)
    .addHelpText(
      'after',
      '\nQuiet by default: nothing on success, one line on failure.\nExit codes: 0 ok, 1 backup failed, 2 usage or configuration error, 74 I/O error (disk full…), 75 another run holds the vault lock, 130/143 interrupted (logged in runs.jsonl).',
    )
    .action(async (o: { config: string; encrypt?: boolean; full?: boolean; wait?: number; verbose?: boolean; json?: boolean } & KeyFlags) => {
      let cfg: VaultConfig;
      try {
        cfg = await loadConfig(path.resolve(ctx.cwd, o.config));
      } catch (e) {
        err(`agent-vault: backup failed: ${oneLine(errorMessage(e))}\n`);
        ctx.exitCode = vaultExitCode(e);
        return;
      }
      // interrupted: remove this run's temp files, log the run as interrupted, release the lock
      let abort: ((reason: string) => void) | undefined;
      const remote = isS3Location(cfg.vault);
      // into a bucket the run is cancelled, not cut short: an upload in flight is aborted (no
      // orphaned multipart upload), the bucket's lock released and the run logged before the exit
      const cancel = new AbortController();
      let interruptedBy: NodeJS.Signals | undefined;
      const offInterrupt = remote
        ? onSignal((sig) => {
            if (interruptedBy) return;
            interruptedBy = sig;
            try {
              abort?.(sig);
            } finally {
              cancel.abort();
              // whatever still runs (a long database query) gets 20 s to end before a hard exit
              setTimeout(() => {
                err(`agent-vault: backup failed: interrupted by ${sig}\n`);
                process.exit(signalExitCode(sig));
              }, 20000).unref();
            }
          })
        : onInterrupt('backup failed:', (sig) => abort?.(sig));
      try {
        const backupOpts = {
          config: cfg,
          env: ctx.env,
          encrypt: o.encrypt,
          full: o.full,
          keys: keySources(ctx, o),
          waitMs: o.wait !== undefined ? o.wait * 1000 : undefined,
          onProgress: o.verbose ? (m: string) => err(`backup: ${m}\n`) : undefined,
          onAbortable: (fn: (reason: string) => void) => {
            abort = fn;
          },
        };
        if (await isStoreLocation(cfg.vault)) {
          await storeBackupCommand(ctx, backupOpts, o);
          return;
        }
        const r: BackupResult = remote ? await withStore(cfg.vault, (store) => runRemoteBackup(store, { ...backupOpts, signal: cancel.signal })) : await runBackup(backupOpts);
        for (const w of r.warnings) if (o.verbose || /webhook|not in the index|index did not list|prune: /.test(w)) err(`agent-vault: warning: ${oneLine(w)}\n`);
        if (o.json)
          out(
            JSON.stringify(
              {
                ok: true,
                snapshot: r.snapshot,
                path: r.path,
                duration_ms: r.duration_ms,
                pruned: r.pruned?.removed.map((s) => s.id) ?? null,
                cleaned: r.cleaned,
                adopted: r.adopted,
                rejected: r.rejected,
                webhook: r.webhook,
                warnings: r.warnings,
              },
              null,
              2,
            ) + '\n',
          );
        else if (o.verbose) {
          const s = r.snapshot;
          out(`snapshot ${s.id}: ${s.agents.length} agent(s), ${s.bytes} bytes${s.encrypted ? ', encrypted' : ''}, ${s.probes} probe(s), ${(r.duration_ms / 1000).toFixed(1)} s\n`);
          if (r.pruned) out(`pruned ${r.pruned.removed.length} snapshot(s)\n`);
        }
        ctx.exitCode = 0;
      } catch (e) {
        const extra = (e as { webhook?: { ok: boolean; error?: string } | null }).webhook;
        const hook = extra && !extra.ok ? ` (the failure webhook failed too: ${extra.error})` : '';
        if (o.json) out(JSON.stringify({ ok: false, error: { code: (e as AgentVaultError).code ?? 'internal', message: errorMessage(e) } }, null, 2) + '\n');
        err(`agent-vault: backup failed: ${interruptedBy ? `interrupted by ${interruptedBy}: ` : ''}${oneLine(errorMessage(e))}${hook}\n`);
        ctx.exitCode = interruptedBy ? signalExitCode(interruptedBy) : vaultExitCode(e);
      } finally {
        offInterrupt();
      }
    });

  // ------------------------------------------------------------------------------------------- prune
  addKeyOptions(
    addVaultOptions(
      program
        .command('prune')
        .description('Delete snapshots the retention policy does not keep (grandfather-father-son, per agent; the newest snapshot of an agent is always kept)')
        .option('--keep-last <n>', 'keep the n newest snapshots', intArg('--keep-last'))
        .option('--keep-hourly <n>', 'keep the newest snapshot of each of the n newest hours with snapshots', intArg('--keep-hourly'))
        .option('--keep-daily <n>', 'keep the newest snapshot of each of the n newest days with snapshots', intArg('--keep-daily'))
        .option('--keep-weekly <n>', 'keep the newest snapshot of each of the n newest ISO weeks with snapshots', intArg('--keep-weekly'))
        .option('--keep-monthly <n>', 'keep the newest snapshot of each of the n newest months with snapshots', intArg('--keep-monthly'))
        .option('--keep-yearly <n>', 'keep the newest snapshot of each of the n newest years with snapshots', intArg('--keep-yearly'))
        .option('--dry-run', 'only print what would be kept and deleted')
        .option('--wait <seconds>', 'wait this long for a running backup instead of refusing', numArg('--wait'))
        .option('-q, --quiet', 'print only the summary line')
        .option('--json', 'print the plan as JSON'),
    ),
  )
    .addHelpText(
      'after',
      '\nWithout --keep-* options the configuration\'s "retention" applies. Periods are calendar periods in UTC.\nOnly snapshots that pass a quick verification (size, sha256, manifest) count; a damaged one is kept and reported.\nExit codes: 0 ok, 1 a snapshot failed verification (kept, named), 2 usage error, 74 I/O error (disk full…), 75 the vault is locked (a backup, prune, drill or verify runs).',
    )
    .action(
      async (
        o: VaultSelection &
          KeyFlags &
          RetentionPolicy & {
            dryRun?: boolean;
            wait?: number;
            quiet?: boolean;
            json?: boolean;
          },
      ) => {
        const { cfg, vault } = await selectVault(ctx, o);
        const fromFlags: RetentionPolicy = { keepLast: o.keepLast, keepHourly: o.keepHourly, keepDaily: o.keepDaily, keepWeekly: o.keepWeekly, keepMonthly: o.keepMonthly, keepYearly: o.keepYearly };
        const anyFlag = Object.values(fromFlags).some((v) => v !== undefined);
        const { pruneAfterBackup: _p, ...fromConfig } = cfg?.retention ?? {};
        const policy = anyFlag ? fromFlags : fromConfig;
        if (await isStoreLocation(vault)) {
          await storePruneCommand(ctx, vault, policy, o, cfg);
          return;
        }
        try {
          if (isS3Location(vault)) {
            const rr = await withStore(vault, (store) => pruneRemote(store, policy, { dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000 }));
            if (o.json)
              out(
                JSON.stringify(
                  {
                    dry_run: rr.dryRun,
                    policy,
                    kept: rr.kept.map((k) => k.id),
                    removed: rr.removed.map((d) => ({ id: d.id, created_at: d.created_at })),
                    freed_bytes: rr.freedBytes,
                    delete_errors: rr.deleteErrors,
                    unverified: rr.unverified,
                  },
                  null,
                  2,
                ) + '\n',
              );
            else {
              if (!o.quiet) for (const d of rr.removed) out(`${rr.dryRun ? 'would delete' : 'delete'} ${d.id}  ${d.created_at}\n`);
              for (const u of rr.unverified) out(`KEEP   ${u.id}  fails verification, not counted for retention: ${u.reason}\n`);
              out(
                `${rr.dryRun ? 'dry run: would keep' : 'kept'} ${rr.kept.length}, ${rr.dryRun ? 'would delete' : 'deleted'} ${rr.removed.length} snapshot(s) (${(rr.freedBytes / 1048576).toFixed(1)} MiB) in ${vault}\n`,
              );
              for (const e of rr.deleteErrors) err(`agent-vault: warning: could not delete ${e}\n`);
            }
            ctx.exitCode = rr.unverified.length ? EXIT.failed : EXIT.ok;
            return;
          }
          const r = await pruneVault(vault, { policy, dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000 });
          if (o.json) {
            out(
              JSON.stringify(
                {
                  dry_run: r.dryRun,
                  policy,
                  kept: r.plan.keep,
                  removed: r.plan.remove.map((d) => ({ id: d.id, created_at: d.created_at })),
                  freed_bytes: r.freedBytes,
                  delete_errors: r.deleteErrors,
                  unverified: r.unverified,
                  adopted: r.adopted,
                  rejected: r.rejected,
                  swept: r.swept,
                },
                null,
                2,
              ) + '\n',
            );
          } else {
            const index = await readIndex(vault);
            const names = new Map<string, string>();
            for (const s of [...index.snapshots, ...r.removed]) for (const a of s.agents) if (a.name) names.set(a.id, a.name);
            if (!o.quiet) {
              for (const d of r.plan.decisions) {
                if (d.keep) out(`keep   ${d.id}  ${d.created_at}  ${describeReasons(d.reasons, { names })}\n`);
                else out(`${r.dryRun ? 'would delete' : 'delete'} ${d.id}  ${d.created_at}\n`);
              }
            }
            for (const u of r.unverified) out(`KEEP   ${u.id}  fails verification, not counted for retention: ${u.reason}\n`);
            out(
              `${r.dryRun ? 'dry run: would keep' : 'kept'} ${r.plan.keep.length + r.unverified.length}, ${r.dryRun ? 'would delete' : 'deleted'} ${r.plan.remove.length} snapshot(s) (${(r.freedBytes / 1048576).toFixed(1)} MiB)\n`,
            );
            for (const e of r.deleteErrors) err(`agent-vault: warning: could not delete ${e}\n`);
          }
          if (r.adopted.length) err(`agent-vault: note: the index did not list ${r.adopted.length} archive(s); they verified and are listed again: ${r.adopted.join(', ')}\n`);
          for (const x of r.rejected) err(`agent-vault: warning: ${x.file} is not in the index and fails verification; left in place: ${oneLine(x.reason)}\n`);
          if (r.unverified.length)
            err(`agent-vault: prune: ${r.unverified.length} snapshot(s) fail verification and were kept: ${r.unverified.map((u) => u.id).join(', ')} (run "agent-vault verify")\n`);
          ctx.exitCode = r.unverified.length || r.rejected.length ? EXIT.failed : EXIT.ok;
        } catch (e) {
          reportVaultError(ctx, e);
          return;
        }
      },
    );

  // ------------------------------------------------------------------------------------------- verify
  addKeyOptions(
    addVaultOptions(
      program
        .command('verify')
        .description('Check every snapshot of the vault: file checksums, manifest schema, entry checksums and decryptability (--deep: decrypt everything, validate agent files, read every vector)')
        .option('--deep', 'read every entry through: decrypt and authenticate, validate .af schemas, check passages and vectors')
        .option('--snapshot <id...>', 'only these snapshots')
        .option('--read-data', 'store vaults: read every pack and authenticate and hash every chunk (--deep implies it)')
        .option('--read-data-subset <n/m|p%>', 'store vaults: read only the n-th of m groups of packs, or p percent of them chosen at random')
        .option('--wait <seconds>', 'wait this long for a running backup or prune instead of refusing', numArg('--wait'))
        .option('-q, --quiet', 'print only problems and the summary')
        .option('--json', 'print the report as JSON'),
    ),
  )
    .addHelpText('after', '\nExit codes: 0 every snapshot verified, 1 a problem was found, 2 usage error, 74 I/O error, 75 a backup or prune holds the vault.')
    .action(async (o: VaultSelection & KeyFlags & { deep?: boolean; readData?: boolean; readDataSubset?: string; snapshot?: string[]; wait?: number; quiet?: boolean; json?: boolean }) => {
      const { cfg, vault } = await selectVault(ctx, o);
      if (await isStoreLocation(vault)) {
        await storeVerifyCommand(ctx, vault, o, cfg);
        return;
      }
      if (o.readData || o.readDataSubset)
        throw new AgentVaultError('usage', `--read-data and --read-data-subset apply to store vaults; ${vault} is a folder of archives (use --deep)`, { kind: 'usage' });
      const material = await resolveKeyMaterial(cfg?.encryption, keySources(ctx, o));
      const verifyOpts = {
        deep: o.deep,
        waitMs: (o.wait ?? 0) * 1000,
        decrypt: decryptOptions(material),
        only: o.snapshot,
        onSnapshot: o.json
          ? undefined
          : (r: SnapshotVerifyResult) => {
              if (r.ok && o.quiet) return;
              out(
                `${r.ok ? 'ok  ' : 'FAIL'} ${r.id}${r.encrypted ? ' (encrypted)' : ''}${
                  r.ok
                    ? ''
                    : `: ${r.checks
                        .filter((c) => !c.ok)
                        .map((c) => `[${c.name}] ${c.message}`)
                        .join('; ')}`
                }\n`,
              );
            },
      };
      const report = isS3Location(vault) ? await withStore(vault, (store) => verifyRemote(store, verifyOpts)) : await verifyVault(vault, verifyOpts);
      if (o.json) out(JSON.stringify(report, null, 2) + '\n');
      else {
        for (const u of report.unlisted) out(`note: ${u} is not in the index; "agent-vault rebuild-index" (or the next backup) verifies it and lists it again\n`);
        for (const l of report.leftovers) out(`note: ${l} is a temp file of an interrupted run; removed\n`);
        for (const f of report.foreign) out(`note: ${f} was not written by Agent Vault; left alone\n`);
        const bad = report.snapshots.filter((s) => !s.ok).length;
        out(`${report.snapshots.length} snapshot(s) verified${report.deep ? ' (deep)' : ''}: ${bad ? `${bad} with problems` : 'all ok'} (${(report.duration_ms / 1000).toFixed(1)} s)\n`);
      }
      ctx.exitCode = report.ok ? 0 : 1;
    });

  // ------------------------------------------------------------------------------------------- drill
  addKeyOptions(
    addVaultOptions(
      program
        .command('drill')
        .description('Restore a snapshot into a scratch database and prove it: row counts, in-context messages, vector searches; reports the time to restore')
        .argument('<snapshot>', 'snapshot id (or unique prefix), "latest", or the path of an archive')
        .option('--database <url>', 'restore into this empty scratch PostgreSQL database instead of an embedded PGlite')
        .option('--database-env <NAME>', 'environment variable holding the scratch database URL')
        .option('--report-dir <dir>', 'write the drill report here (default: <vault>/drills)')
        .option('--wait <seconds>', 'wait this long for a running backup or prune instead of refusing', numArg('--wait'))
        .option('--json', 'print the report as JSON'),
    ),
  )
    .addHelpText('after', '\nExit codes: 0 the drill passed, 1 it failed (the failed checks are named), 2 usage error, 74 I/O error, 75 a backup or prune holds the vault.')
    .action(async (snapshot: string, o: VaultSelection & KeyFlags & { database?: string; databaseEnv?: string; reportDir?: string; wait?: number; json?: boolean }) => {
      const isFile = existsSync(snapshot) && !o.vault && !o.config;
      const sel = isFile ? { cfg: undefined, vault: undefined } : await selectVault(ctx, o);
      const material = await resolveKeyMaterial(sel.cfg?.encryption, keySources(ctx, o));
      let databaseUrl = o.database;
      if (o.databaseEnv) {
        databaseUrl = ctx.env[o.databaseEnv];
        if (!databaseUrl) throw new AgentVaultError('usage', `environment variable ${o.databaseEnv} (--database-env) is not set`, { kind: 'usage' });
      }
      let fetched: { dir: string; path: string } | undefined;
      // a store vault (folder or s3://…): runDrill reads the snapshot in place from the store (no
      // archive is written; the report of an s3:// one goes to --report-dir, default the current folder)
      const s3Store = !!sel.vault && isS3Location(sel.vault) && (await isStoreLocation(sel.vault));
      if (sel.vault && isS3Location(sel.vault) && !s3Store) {
        // the snapshot is downloaded and checked against the index's SHA-256; the report goes to --report-dir (default: the current folder)
        const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-vault-drill-'));
        const got = await withStore(sel.vault, (store) => fetchSnapshot(store, snapshot, dir));
        fetched = { dir, path: got.path };
      }
      const report = await runDrill({
        snapshot: fetched ? fetched.path : snapshot,
        vaultDir: fetched ? undefined : sel.vault,
        decrypt: decryptOptions(material),
        databaseUrl,
        env: ctx.env,
        reportDir: o.reportDir ? path.resolve(ctx.cwd, o.reportDir) : fetched || s3Store ? ctx.cwd : undefined,
        waitMs: (o.wait ?? 0) * 1000,
      }).finally(() => (fetched ? fsp.rm(fetched.dir, { recursive: true, force: true }) : undefined));
      if (o.json) out(JSON.stringify(report, null, 2) + '\n');
      else {
        const t = report.timings;
        out(`drill ${report.ok ? 'PASSED' : 'FAILED'}: ${report.snapshot.id ?? report.snapshot.file} → ${report.target}\n`);
        for (const c of report.checks) out(`  ${c.skipped ? 'skip' : c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.message}\n`);
        out(
          `  RTO ${t.rto_ms === null ? '—' : `${(t.rto_ms / 1000).toFixed(2)} s`}; first correct vector search ${t.first_vector_search_ms === null ? '—' : `${(t.first_vector_search_ms / 1000).toFixed(2)} s`}\n`,
        );
        if (report.files) out(`  report: ${report.files.json} (+ .md)\n`);
        if (!report.ok) err(`agent-vault: drill failed: ${report.failed_checks.length ? `check(s) ${report.failed_checks.join(', ')}` : (report.error?.message ?? 'error')}\n`);
      }
      ctx.exitCode = report.ok ? 0 : 1;
    });

  // ------------------------------------------------------------------------------------------- status
  addVaultOptions(
    program
      .command('status')
      .description('Per agent: the age of its newest snapshot against the policy, and its latest drill result')
      .option('--max-age-hours <h>', 'a newest snapshot older than this is stale (default: config policy.maxAgeHours, else 26)', numArg('--max-age-hours'))
      .option('--drill-max-age-days <d>', 'no passing drill within this many days is a warning (default: config, else 7)', numArg('--drill-max-age-days'))
      .option('--snapshots', 'also list every snapshot (id, time, size, agents)')
      .option('--check', 'exit with 1 when any agent has a warning or a failed drill')
      .option('--json', 'print the status as JSON'),
  ).action(async (o: VaultSelection & { maxAgeHours?: number; drillMaxAgeDays?: number; snapshots?: boolean; check?: boolean; json?: boolean }) => {
    const { cfg, vault } = await selectVault(ctx, o);
    const policy = { maxAgeHours: o.maxAgeHours ?? cfg?.policy?.maxAgeHours, drillMaxAgeDays: o.drillMaxAgeDays ?? cfg?.policy?.drillMaxAgeDays };
    const remote = isS3Location(vault);
    const fromStore = (await isStoreLocation(vault)) ? await storeStatusFor(ctx, vault, policy, cfg) : undefined;
    const storeIndex = fromStore?.index;
    const s = fromStore ? fromStore.status : remote ? await withStore(vault, (store) => remoteVaultStatus(store, policy)) : await vaultStatus(vault, policy);
    const snaps = o.snapshots ? (storeIndex ? storeIndex.snapshots : remote ? (await withStore(vault, (store) => readStoreIndex(store)))!.snapshots : (await readIndex(vault)).snapshots) : undefined;
    const missing = new Set(s.missing.map((m) => m.id));
    const damaged = new Set((s.damaged ?? []).map((m) => m.id));
    if (o.json) out(JSON.stringify(snaps ? { ...s, snapshot_list: snaps } : s, null, 2) + '\n');
    else {
      out(renderStatus(s));
      if (snaps) {
        out('\nsnapshots:\n');
        for (const x of snaps)
          out(
            `  ${x.id}  ${x.created_at}  ${(x.bytes / 1048576).toFixed(1)} MiB${x.encrypted ? '  encrypted' : ''}  ${x.agents.map((a) => a.name ?? a.id).join(', ')}${missing.has(x.id) ? '  FILE MISSING' : ''}${damaged.has(x.id) ? '  DAMAGED' : ''}\n`,
          );
      }
    }
    ctx.exitCode = o.check && s.level !== 'ok' ? 1 : 0;
  });

  // ------------------------------------------------------------------------------------------- rebuild-index
  addVaultOptions(
    program
      .command('rebuild-index')
      .description('Rebuild the vault index (vault.json) from the snapshot archives: the archives are the truth, the index is a cache')
      .option('--dry-run', 'only print what would change')
      .option('--wait <seconds>', 'wait this long for a running backup, prune, drill or verify instead of refusing', numArg('--wait'))
      .option('--json', 'print the report as JSON'),
  )
    .addHelpText(
      'after',
      "\nEvery archive in snapshots/ is verified (manifest and every entry's checksums) and listed; one that fails is reported and left in place; a listed snapshot whose archive is gone leaves the index. Nothing is deleted. A damaged vault.json is kept as vault.json.damaged-<time>.\nOn s3://bucket/prefix the same, under the bucket's lock: every unlisted archive object is downloaded and verified (its SHA-256 against the one stored with it, manifest, every entry's checksum).\nExit codes: 0 ok, 1 an archive failed verification (reported, left in place), 2 usage error (missing bucket), 3 S3 unreachable or credentials refused, 74 I/O error, 75 another run holds the vault.",
    )
    .action(async (o: VaultSelection & { dryRun?: boolean; wait?: number; json?: boolean }) => {
      const { vault } = await selectVault(ctx, o);
      let r;
      try {
        r = isS3Location(vault)
          ? await withStore(vault, (store) => rebuildRemoteIndex(store, { dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000 }))
          : await rebuildIndex(vault, { dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000 });
      } catch (e) {
        reportVaultError(ctx, e);
        return;
      }
      if (o.json) out(JSON.stringify({ ...r, adopted: r.adopted.map((a) => a.id) }, null, 2) + '\n');
      else {
        const would = r.dryRun ? 'would be ' : '';
        if (r.previous !== 'ok') out(`the index was ${r.previous}${r.backup ? `; ${r.dryRun ? 'it would be kept as' : 'kept as'} ${r.backup}` : ''}\n`);
        for (const a of r.adopted) out(`${r.dryRun ? 'would list' : 'listed'} ${a.id}  ${a.created_at}  ${a.agents.map((x) => x.name ?? x.id).join(', ')}\n`);
        for (const m of r.missing) out(`${r.dryRun ? 'would drop' : 'dropped'} ${m.id}: its archive ${m.file} is missing\n`);
        for (const d of r.damaged) out(`DAMAGED ${d.id}: ${d.reason} (kept listed; see "agent-vault verify")\n`);
        for (const x of r.rejected) out(`NOT LISTED ${x.file}: fails verification (left in place): ${oneLine(x.reason)}\n`);
        for (const f of r.foreign) out(`note: ${f} was not written by Agent Vault; left alone\n`);
        for (const t of r.swept) out(`removed temp file ${t}\n`);
        out(
          `index ${r.dryRun ? 'not written (dry run)' : 'written'}: ${r.kept.length + r.damaged.length + r.adopted.length} snapshot(s) (${r.adopted.length} ${would}listed again, ${r.missing.length} ${would}dropped as missing, ${r.rejected.length} archive(s) failing verification)\n`,
        );
      }
      ctx.exitCode = r.rejected.length || r.damaged.length ? EXIT.failed : EXIT.ok;
    });
  // ------------------------------------------------------------------------------------------- vault copy
  const vaultGroup = program.command('vault').description('Operations between vaults (local folders and s3:// locations) and on store vaults');
  registerStoreCommands(vaultGroup, ctx);
  vaultGroup
    .command('copy')
    .description('Copy snapshots from one vault to another (local folder ↔ s3://bucket/prefix, S3 ↔ S3), skipping what the target has and verifying what it copies')
    .argument('<from>', 'source vault: a folder or s3://bucket/prefix[?endpoint=URL&region=R&path-style=true]')
    .argument('<to>', 'target vault (created when it does not exist yet)')
    .option('-s, --snapshot <id>', 'copy only this snapshot (id or unique prefix; repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--dry-run', 'list what would be copied; change nothing')
    .option('--wait <seconds>', "wait this long for the target's lock instead of refusing", numArg('--wait'))
    .option('--json', 'print the result as JSON')
    .option('--passphrase-file <file>', 'store vaults: the passphrase of an encrypted store (default AGENT_VAULT_PASSPHRASE)')
    .option('--passphrase-env <NAME>', 'store vaults: read the passphrase from this environment variable')
    .option('--key-file <file>', 'store vaults: the 32-byte key file of an encrypted store')
    .addHelpText(
      'after',
      '\nStore vaults (docs/VAULT.md "Copying store vaults"): between two copies of one store only the packs, index entries and snapshots the target lacks are copied, each checked against its SHA-256; an empty target becomes a copy of the source\'s store. A store vault and a folder of archives are not converted (exit 2: use "vault export" or "vault migrate").\nCredentials for s3:// come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE), never from the location.\nA snapshot the target lists with another checksum, or an unlisted archive in its place, is reported and never overwritten.\nExit codes: 0 ok, 1 a conflict or a snapshot missing at the source (reported), 2 usage (bad location, missing bucket), 3 S3 unreachable or credentials refused, 74 local I/O error, 75 the target is locked.',
    )
    .action(async (from: string, to: string, o: { snapshot?: string[]; dryRun?: boolean; wait?: number; json?: boolean; passphraseFile?: string; passphraseEnv?: string; keyFile?: string }) => {
      if ((await isStoreLocation(resolveVault(ctx, from))) || (await isStoreLocation(resolveVault(ctx, to)))) {
        await storeCopyCommand(ctx, from, to, o);
        return;
      }
      const src = await openObjectStore(/^s3:/i.test(from) ? from : path.resolve(ctx.cwd, from));
      const dst = await openObjectStore(/^s3:/i.test(to) ? to : path.resolve(ctx.cwd, to));
      try {
        const r = await copyVault(src, dst, { snapshots: o.snapshot, dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000 });
        if (o.json) out(JSON.stringify(r, null, 2) + '\n');
        else {
          for (const i of r.items) if (i.action !== 'skipped') out(`${i.action.padEnd(17)} ${i.snapshot}${i.bytes ? `  ${i.bytes} bytes` : ''}${i.detail ? `  (${oneLine(i.detail)})` : ''}\n`);
          out(`${o.dryRun ? 'dry run: ' : ''}${r.copied} copied, ${r.adopted} adopted, ${r.skipped} already there, ${r.conflicts} conflict(s), ${r.missing} missing at the source → ${r.to}\n`);
        }
        ctx.exitCode = r.ok ? EXIT.ok : EXIT.failed;
      } catch (e) {
        reportVaultError(ctx, e, 'vault copy failed: ');
      } finally {
        await src.close();
        await dst.close();
      }
    });
}
