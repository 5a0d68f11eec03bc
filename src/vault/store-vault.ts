/**
 * Store vaults (docs/VAULT.md "Store vaults"): a vault folder whose snapshots live in the
 * deduplicating store (./store, docs/FORMAT.md part II) under `<vault>/store/`. A vault is a store
 * vault when `<vault>/store/config.json` exists (made by `agent-vault vault init --store` or by
 * `agent-vault vault migrate`). The store's files go through the ObjectStore interface
 * (LocalStore here), so the same code runs on an S3Store.
 *
 * Every write (backup, prune, migrate) holds the vault's exclusive lock (./vault.ts); every read
 * (verify, drill, export, restore/diff/inspect by reference) holds a shared lock in `.readers/`, so
 * a prune never sweeps chunks a reader is streaming.
 *
 * A snapshot is addressed like a folder vault's: its vault id (`2026-03-01T020000Z-1a2b3c`, the
 * name of the archive it was made from), a unique prefix of it, "latest", or the store's own id
 * (64 hex digits, or a unique prefix of at least 8).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, promises as fsp, rmSync } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../core/errors';
import { openArchive, type Manifest } from '../format/archive';
import { openStoreSnapshotReader } from './store/reader';
import type { ArchiveKey, DecryptOptions } from '../format/crypto';
import * as os from 'node:os';
import { runBackup, type BackupEvent, type BackupOptions, type BackupResult } from './backup';
import type { ExportReuse } from '../letta/export';
import { checkProbeSet, PROBES_ENTRY, type AgentProbes, type ProbeSet } from './probes';
import { postWebhook, redactUrl, wantsWebhook, type WebhookResult } from './webhook';
import { TOOL_VERSION } from '../core/version';
import { decryptOptions, resolveKeyMaterial, writingKey, type KeyMaterial } from './config';
import { planRetention, type RetentionPlan, type RetentionPolicy } from './retention';
import { LocalStore, type ObjectStore } from './remote/store';
import { isS3Location, requireLocalVault } from './remote/location';
import { acquireRemoteLock, acquireRemoteReaderLock, waitForRemoteReaders } from './remote/lock';
import { S3Store } from './remote/s3';
import { appendStoreRunLog } from './remote/copy';
import { vaultStatus, type VaultStatus } from './status';
import type { StatusPolicy } from './config';
import {
  checkRepo,
  copySnapshots,
  entryContent,
  exportSnapshotToArchive,
  forgetSnapshots,
  ingestArchive,
  initStore,
  BlobIndex,
  StoreSnapshotWriter,
  listSnapshots,
  loadSnapshot,
  openRepo,
  pruneUnreferenced,
  storeBytes,
  sweepStoreTemp,
  type CheckReport,
  type CopySnapshotsResult,
  type IngestResult,
  type PruneFaultPoint,
  type PruneResult as StorePruneResult,
  type Repo,
  type SnapshotInfo,
} from './store/repo';
import type { RunLogRecord, SnapshotRecord, VaultIndex, VaultLock } from './vault';
import {
  acquireSharedLock,
  appendRunLog,
  emptyIndex,
  newRunId,
  ensureVaultDirs,
  readIndex,
  runLogRecord,
  snapshotPath,
  TMP_DIR,
  withLock,
  withSharedLock,
  SNAPSHOT_EXT,
  DRILLS_DIR,
  RUN_LOG,
} from './vault';

export const STORE_DIR = 'store';
/** A backup's staging folder under `<vault>/.tmp/`. */
const STAGE_NAME = /^stage-[0-9a-f]{12}$/;

/** True when the folder is a store vault (`<vault>/store/config.json` exists). */
export function isStoreVault(vaultDir: string): boolean {
  return existsSync(path.join(vaultDir, STORE_DIR, 'config.json'));
}

function storeOf(vaultDir: string): LocalStore {
  return new LocalStore(vaultDir);
}

/**
 * Where a store vault lives: a folder, or `s3://bucket/prefix` (the same layout, one file = one
 * object: `<vault>/store/…`, `runs.jsonl`, `.lock`).
 */
export interface VaultPlace {
  vault: string;
  store: ObjectStore;
  remote: boolean;
  close(): Promise<void>;
}

/** Lock timings of the object-storage lock (tests shorten the read-back pause). */
export const remoteLockTimings: { settleMs?: number; heartbeatMs?: number; staleMs?: number; pollMs?: number } = {};

export async function openPlace(vault: string): Promise<VaultPlace> {
  if (!isS3Location(vault)) return { vault, store: storeOf(vault), remote: false, close: async () => undefined };
  const store = new S3Store(vault);
  return { vault: store.location, store, remote: true, close: () => store.close() };
}

async function withPlace<T>(vault: string, fn: (p: VaultPlace) => Promise<T>): Promise<T> {
  const p = await openPlace(vault);
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

/**
 * The vault's lock around `fn`: a folder's exclusive or shared lock (./vault.ts); in object
 * storage the exclusive `.lock` object or a shared reader lock under `.readers/`
 * (./remote/lock.ts): a prune (`deletes`) and the readers keep out of each other's way.
 */
async function withPlaceLock<T>(p: VaultPlace, opts: { command: string; waitMs?: number; shared?: boolean; deletes?: boolean }, fn: (lock?: VaultLock) => Promise<T>): Promise<T> {
  if (!p.remote) return opts.shared ? withSharedLock(p.vault, opts, fn) : withLock(p.vault, opts, fn);
  const lock = opts.shared
    ? await acquireRemoteReaderLock(p.store, { command: opts.command, waitMs: opts.waitMs, ...remoteLockTimings })
    : await acquireRemoteLock(p.store, { command: opts.command, waitMs: opts.waitMs, deletes: opts.deletes, ...remoteLockTimings });
  try {
    return await fn();
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/** A shared reader lock of the vault, held until released (a folder's or one in object storage). */
export async function acquirePlaceReaderLock(p: VaultPlace, opts: { command: string; waitMs?: number }): Promise<{ release(): Promise<void> }> {
  if (!p.remote) return acquireSharedLock(p.vault, opts);
  return acquireRemoteReaderLock(p.store, { command: opts.command, waitMs: opts.waitMs, ...remoteLockTimings });
}

async function placeRunLog(p: VaultPlace, rec: RunLogRecord): Promise<void> {
  if (p.remote) await appendStoreRunLog(p.store, rec);
  else if (existsSync(p.vault)) await appendRunLog(p.vault, rec);
}

/** True when the location (a folder or s3://…) holds a store vault; false when it cannot be read (the caller's own path reports that). */
export async function isStoreLocation(vault: string): Promise<boolean> {
  if (!isS3Location(vault)) return isStoreVault(vault);
  try {
    return await withPlace(vault, async (p) => (await p.store.head(`${STORE_DIR}/config.json`)) !== null);
  } catch {
    return false;
  }
}

/** True when the place holds a store (`store/config.json`). */
export async function placeIsStore(p: VaultPlace): Promise<boolean> {
  return p.remote ? (await p.store.head(`${STORE_DIR}/config.json`)) !== null : isStoreVault(p.vault);
}

function noStore(vault: string): AgentVaultError {
  return new AgentVaultError('no-store', `${vault} is not a store vault (no ${STORE_DIR}/config.json)`, {
    kind: 'usage',
    remedy: 'init-store',
  });
}

/** The store of a vault wherever it is (a folder or s3://…); error no-store when it has none. */
export async function openPlaceRepo(p: VaultPlace, decrypt?: DecryptOptions): Promise<Repo> {
  if (!(await placeIsStore(p))) throw noStore(p.vault);
  return openRepo(p.store, { ...(decrypt ?? {}), prefix: `${STORE_DIR}/` });
}

/** The vault id of a store snapshot: the stem of the archive it was made from (else its store id). */
export function vaultIdOf(s: Pick<SnapshotInfo, 'id' | 'source'>): string {
  const f = s.source?.file;
  return f && f.endsWith(SNAPSHOT_EXT) ? f.slice(0, -SNAPSHOT_EXT.length) : s.id;
}

/** Opens the store of a vault folder (an encrypted one needs the key). */
export async function openVaultRepo(vaultDir: string, decrypt?: DecryptOptions): Promise<Repo> {
  if (isS3Location(vaultDir)) throw new AgentVaultError('usage', `openVaultRepo takes a folder; ${vaultDir} is in object storage (use openPlace)`, { kind: 'usage' });
  return openPlaceRepo(await openPlace(vaultDir), decrypt);
}

export interface InitStoreVaultOptions {
  /** encrypt the store with this key */
  key?: ArchiveKey;
  packSize?: number;
  waitMs?: number;
}

/** Creates the store of a vault (a folder, made if missing, or s3://…); error 'exists' when it has one. */
export async function initStoreVault(vault: string, opts: InitStoreVaultOptions = {}): Promise<Repo> {
  return withPlace(vault, async (p) => {
    if (!p.remote) await ensureVaultDirs(vault);
    return withPlaceLock(p, { command: 'vault init --store', waitMs: opts.waitMs }, async () => {
      if (await placeIsStore(p)) throw new AgentVaultError('exists', `${p.vault} is a store vault already; nothing was changed`, { kind: 'usage' });
      return initStore(p.store, { prefix: `${STORE_DIR}/`, key: opts.key, packSize: opts.packSize });
    });
  });
}

/** Resolves a snapshot reference (see the module comment). */
export function findStoreSnapshot(snaps: readonly SnapshotInfo[], ref: string, vaultDir: string): SnapshotInfo {
  const good = snaps.filter((s) => !s.error);
  const when = (s: SnapshotInfo): string => s.created_at ?? s.time;
  const sorted = [...good].sort((a, b) => (when(a) === when(b) ? (a.id < b.id ? -1 : 1) : when(a) < when(b) ? -1 : 1));
  if (ref === 'latest') {
    const s = sorted[sorted.length - 1];
    if (!s) throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshots yet`, { kind: 'usage' });
    return s;
  }
  const exact = sorted.filter((s) => s.id === ref || vaultIdOf(s) === ref);
  if (exact.length === 1) return exact[0];
  const byPrefix = sorted.filter((s) => vaultIdOf(s).startsWith(ref) || (ref.length >= 8 && /^[0-9a-f]+$/.test(ref) && s.id.startsWith(ref)));
  if (exact.length > 1 || byPrefix.length > 1) {
    const c = exact.length > 1 ? exact : byPrefix;
    throw new AgentVaultError(
      'usage',
      `snapshot "${ref}" is ambiguous in ${vaultDir}: ${c
        .slice(0, 5)
        .map((s) => `${vaultIdOf(s)} (${s.id.slice(0, 12)})`)
        .join(', ')}${c.length > 5 ? ', …' : ''}`,
      { kind: 'usage' },
    );
  }
  if (byPrefix.length === 1) return byPrefix[0];
  throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshot "${ref}"`, { kind: 'usage', remedy: 'list-snapshots' });
}

// ---------------------------------------------------------------------------------------------
// backup

export interface StoreBackupResult {
  /** the vault id (as a folder vault would name the archive) */
  id: string;
  snapshotId: string;
  created_at: string;
  agents: Array<{ id: string; name: string | null }>;
  encrypted: boolean;
  ingest: IngestResult;
  /** 0: the export writes straight into the store, no archive (kept for the JSON output's shape) */
  archiveBytes: number;
  /** the export into the store (chunks, packs, index) */
  export_ms: number;
  /** writing the snapshot file that lists it */
  ingest_ms: number;
  duration_ms: number;
  warnings: string[];
  pruned: StorePruneVaultResult | null;
  /**
   * Agents copied unchanged from the parent snapshot (`parent`: its vault id, `parent_store_id`:
   * its store id) and agents read from the database; `off`: why nothing could be reused.
   */
  reuse: ExportReuse & { parent_store_id: string | null };
}

/**
 * `backup` into a store vault: the export (the same code as a folder vault's backup, run with a
 * staging folder under `<vault>/.tmp/` for its lock and run log) writes its entries straight into
 * the store, no archive in between: each entry is cut into chunks as it is produced and only the
 * chunks the store lacks are compressed, encrypted and packed (StoreSnapshotWriter); the snapshot
 * file, written last, lists the snapshot. The staging folder, which this run made, is removed. Holds the vault's exclusive lock throughout; logs one line in `runs.jsonl`.
 */
export async function storeBackup(opts: BackupOptions): Promise<StoreBackupResult> {
  const cfg = opts.config;
  const vaultDir = cfg.vault;
  const started = new Date();
  const env = opts.env ?? process.env;
  const runId = newRunId();
  let res: StoreBackupResult | undefined;
  /** the webhook (as a folder vault's backup posts it) and the run-log line */
  const finish = async (error: unknown): Promise<WebhookResult | null> => {
    const finished = new Date();
    const err = error === undefined ? null : { code: error instanceof AgentVaultError ? error.code : 'internal', message: errorMessage(error) };
    const ev: BackupEvent = {
      event: err ? 'backup.failed' : 'backup.succeeded',
      ok: !err,
      vault: vaultDir,
      config: cfg.file ?? null,
      host: os.hostname(),
      run_id: runId,
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      duration_ms: finished.getTime() - started.getTime(),
      snapshot: res ? { id: res.id, created_at: res.created_at, bytes: res.ingest.bytesAdded, agents: res.agents.length, encrypted: res.encrypted } : null,
      error: err,
      tool: { name: 'agent-vault', version: TOOL_VERSION },
    };
    let hook: WebhookResult | null = null;
    if (wantsWebhook(cfg.webhook, err ? 'failure' : 'success')) {
      hook = await postWebhook(cfg.webhook!, ev, env);
      if (!hook.ok) res?.warnings.push(`webhook ${redactUrl(cfg.webhook!.url)} failed: ${hook.error}`);
    }
    const fields = res
      ? {
          snapshot: res.id,
          store_snapshot: res.snapshotId,
          bytes_added: res.ingest.bytesAdded,
          bytes_read: res.ingest.bytesRead,
          bytes_copied: res.ingest.bytesCopied ?? 0,
          agents_reused: res.reuse.reused,
          agents_read: res.reuse.exported,
          parent: res.reuse.parent,
          pruned: res.pruned ? res.pruned.removed.map((x) => x.id) : null,
        }
      : { snapshot: null, error: err };
    await withPlace(vaultDir, (p) =>
      placeRunLog(p, runLogRecord('backup', started, !err, { ...fields, webhook: hook ? { ok: hook.ok, status: hook.status ?? null, error: hook.error ?? null } : null }, runId)),
    ).catch(() => undefined);
    return hook;
  };
  // interrupted (the CLI calls this on a signal, then exits): the staging run's own cleanup, this
  // run's staging folder removed, the run logged as interrupted in the vault's run log, the lock
  // released — synchronously (a vault in object storage: the CLI cancels the run instead)
  const state: AbortState = { phase: 'export', done: false };
  opts.onAbortable?.((reason: string) => {
    if (state.done) return;
    state.done = true;
    try {
      state.stageAbort?.(reason);
    } catch {
      /* best effort */
    }
    if (isS3Location(vaultDir)) return;
    try {
      if (state.stage) rmSync(state.stage, { recursive: true, force: true });
    } catch {
      /* best effort: the next backup removes it */
    }
    const what =
      state.phase === 'export'
        ? '; no snapshot was written (packs it had written into the store are referenced by no snapshot; the next prune removes them)'
        : state.phase === 'ingest'
          ? ' while its snapshot was being listed in the store (a snapshot is listed only once its snapshot file is written; chunks no snapshot references are removed by the next prune)'
          : ' after its snapshot was stored';
    try {
      appendFileSync(
        path.join(vaultDir, RUN_LOG),
        JSON.stringify(runLogRecord('backup', started, false, { interrupted: true, snapshot: null, error: { code: 'interrupted', message: `backup interrupted by ${reason}${what}` } }, runId)) + '\n',
        { mode: 0o600 },
      );
    } catch {
      /* best effort */
    }
    state.lock?.releaseSync();
  });
  try {
    res = await withPlace(vaultDir, (p) => storeBackupRun(p, { ...opts, onAbortable: undefined }, started, state));
  } catch (e) {
    const hook = await finish(e);
    if (hook && !hook.ok && e instanceof Error) Object.assign(e, { webhook: hook });
    throw e;
  }
  await finish(undefined);
  return res;
}

/** What an interruption of a store backup must undo and say (see storeBackup). */
interface AbortState {
  phase: 'export' | 'ingest' | 'stored';
  done: boolean;
  stage?: string;
  lock?: VaultLock;
  stageAbort?: (reason: string) => void;
}

async function storeBackupRun(p: VaultPlace, opts: BackupOptions, started: Date, state: AbortState = { phase: 'export', done: false }): Promise<StoreBackupResult> {
  const cfg = opts.config;
  const vaultDir = p.vault;
  const material = await resolveKeyMaterial(cfg.encryption, opts.keys);
  const decrypt = decryptOptions(material);
  const repo = await openPlaceRepo(p, decrypt);
  if (repo.crypto === undefined && (opts.encrypt ?? cfg.encryption?.enabled ?? false)) {
    throw new AgentVaultError('store-not-encrypted', `the backup is to be encrypted and the store of ${vaultDir} is not (its secrets would be stored in plain text); nothing was written`, {
      kind: 'usage',
      remedy: 'init-store',
      hint: 'only a store vault made encrypted keeps encrypted snapshots',
    });
  }
  const backupWaitMs = opts.waitMs ?? (cfg.lock?.waitSeconds ?? 0) * 1000;
  return withPlaceLock(p, { command: 'backup', waitMs: backupWaitMs, deletes: !!cfg.retention?.pruneAfterBackup }, async (lock) => {
    state.lock = lock;
    // staging folders of interrupted runs (this project's own name; no run holds them: we hold the lock)
    const swept: string[] = [];
    let stage: string;
    if (p.remote) {
      // a vault in object storage stages in a local temp folder; only the store's new objects are uploaded
      stage = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-vault-stage-'));
    } else {
      for (const n of await fsp.readdir(path.join(vaultDir, TMP_DIR)).catch(() => [] as string[])) {
        if (!STAGE_NAME.test(n)) continue;
        await fsp.rm(path.join(vaultDir, TMP_DIR, n), { recursive: true, force: true });
        swept.push(`${TMP_DIR}/${n}`);
      }
      stage = path.join(vaultDir, TMP_DIR, `stage-${randomBytes(6).toString('hex')}`);
      await fsp.mkdir(stage, { recursive: true });
    }
    // temp files of store writes a kill cut short (the store's own temp-file name only)
    for (const k of await sweepStoreTemp(repo)) swept.push(k);
    state.stage = stage;
    const progress = opts.onProgress ?? (() => undefined);
    try {
      const t0 = Date.now();
      // the staging run (its own vault folder for its lock and run log; no webhook, no prune: both
      // are this run's) exports straight into the store: no archive is written
      const stageCfg = { ...cfg, vault: stage, webhook: undefined, retention: undefined };
      const encrypted = opts.encrypt ?? cfg.encryption?.enabled ?? false;
      let writer: StoreSnapshotWriter | undefined;
      const sink = (archivePath: string): StoreSnapshotWriter => {
        writer = new StoreSnapshotWriter(repo, { sourceFile: path.basename(archivePath), encrypted, path: archivePath, reuseParent: !opts.full });
        return writer;
      };
      // the probes of agents taken from the parent snapshot: its probes entry, read once
      let parentProbes: Promise<ProbeSet | null> | undefined;
      const reusedProbes = async (agentId: string): Promise<AgentProbes | null> => {
        const parent = writer?.parent;
        if (!parent) throw new AgentVaultError('internal', `agent ${agentId} was reused without a parent snapshot`);
        parentProbes ??= (async () => {
          const e = parent.snap.entries.find((x) => x.name === PROBES_ENTRY);
          if (!e) return null;
          const parts: Buffer[] = [];
          for await (const b of entryContent(repo, parent.id, e)) parts.push(b);
          return checkProbeSet(JSON.parse(Buffer.concat(parts).toString('utf8')) as ProbeSet, `${vaultDir}#${parent.file.replace(/\.avsnap$/, '')}`);
        })();
        const set = await parentProbes;
        return set?.agents.find((a) => a.agent_id === agentId) ?? null;
      };
      const r: BackupResult = await runBackup({ ...opts, config: stageCfg, onLocked: undefined, sink, reusedProbes, onAbortable: (fn) => (state.stageAbort = fn) });
      if (!writer) throw new AgentVaultError('internal', 'the export wrote no snapshot');
      state.phase = 'ingest';
      const exportMs = Date.now() - t0;
      // the snapshot file, written last, lists the snapshot
      progress(`listing the snapshot in the store`);
      const t1 = Date.now();
      const ingest = await writer.commit(r.snapshot.created_at);
      const ingestMs = Date.now() - t1;
      state.phase = 'stored';
      let pruned: StorePruneVaultResult | null = null;
      const warnings = [...r.warnings, ...swept.map((x) => `removed ${x}, ${x.startsWith(`${TMP_DIR}/`) ? 'the staging folder' : 'a temp file'} of an interrupted backup`)];
      if (cfg.retention?.pruneAfterBackup) {
        const { pruneAfterBackup: _p, ...policy } = cfg.retention;
        try {
          pruned = await pruneLocked(repo, { policy, waitMs: backupWaitMs }, p.remote ? 'backup (prune after)' : undefined);
          for (const u of pruned.unreadable) warnings.push(`prune: snapshot ${u.id} fails verification and was kept (not counted for retention): ${u.reason}`);
          if (pruned.sweepSkipped) warnings.push(`prune: the sweep did not run: ${pruned.sweepSkipped}`);
        } catch (e) {
          warnings.push(`prune: ${errorMessage(e)}`);
        }
      }
      return {
        id: r.snapshot.id,
        snapshotId: ingest.snapshotId,
        created_at: r.snapshot.created_at,
        agents: r.snapshot.agents.map((a) => ({ id: a.id, name: a.name })),
        encrypted: r.snapshot.encrypted,
        ingest,
        archiveBytes: 0,
        export_ms: exportMs,
        ingest_ms: ingestMs,
        duration_ms: Date.now() - started.getTime(),
        warnings,
        pruned,
        reuse: { ...r.reuse, parent_store_id: writer.parent?.id ?? null },
      };
    } finally {
      await fsp.rm(stage, { recursive: true, force: true }).catch(() => undefined);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// reading: export / materialise

/** The key to write an archive of a snapshot that came from an encrypted one (same passphrase or key). */
async function exportKey(material: KeyMaterial | undefined, encrypted: boolean, what: string): Promise<{ key: ArchiveKey } | undefined> {
  if (!encrypted) return undefined;
  if (!material || material.kind === 'none') {
    throw new AgentVaultError('no-key', `${what} came from an encrypted archive; reading it needs the vault's passphrase or key; nothing was written`, { kind: 'usage', remedy: 'key' });
  }
  return { key: (await writingKey(material, null)).key };
}

export interface StoreExportOptions {
  material?: KeyMaterial;
  overwrite?: boolean;
  waitMs?: number;
  command?: string;
}

/**
 * Writes a store snapshot as a single-file `.avsnap` (streaming, bounded memory) under the
 * vault's shared lock (a folder's, or a reader lock in the bucket); the archive has the snapshot's
 * manifest and byte-identical entries (an encrypted source is written encrypted with the same
 * passphrase or key). The entries are read in place (./store/reader.ts: ranged reads of the packs,
 * read ahead, every blob checked against its id and every entry against its SHA-256); the archive
 * is written whole or not at all (a damaged pack leaves no file).
 */
export async function exportStoreSnapshot(
  vaultDir: string,
  ref: string,
  outPath: string,
  opts: StoreExportOptions = {},
): Promise<{ path: string; bytes: number; id: string; snapshotId: string; manifest: Manifest }> {
  const decrypt = opts.material ? decryptOptions(opts.material) : undefined;
  return withPlace(vaultDir, async (p) => {
    if (!(await placeIsStore(p))) throw noStore(p.vault);
    return withPlaceLock(p, { command: opts.command ?? `vault export ${ref}`, waitMs: opts.waitMs, shared: true }, async () => {
      const repo = await openPlaceRepo(p, decrypt);
      const s = findStoreSnapshot(await listSnapshots(repo), ref, p.vault);
      const encryption = await exportKey(opts.material, !!s.source?.encrypted, `snapshot ${vaultIdOf(s)}`);
      // one pass: no cache of pack ranges
      const reader = await openStoreSnapshotReader(repo, s.id, { label: `${p.vault}#${vaultIdOf(s)}`, cacheBytes: 0 });
      try {
        const r = await exportSnapshotToArchive(repo, s.id, outPath, { encryption, overwrite: opts.overwrite, content: (e) => reader.stream(e.name, { verify: 'sha256', entrySha256: true }) });
        return { ...r, id: vaultIdOf(s), snapshotId: s.id };
      } finally {
        await reader.close();
      }
    });
  });
}

/** Lists a store vault's snapshots with their vault ids (oldest first). */
export async function listStoreVault(vaultDir: string, decrypt?: DecryptOptions): Promise<Array<SnapshotInfo & { vault_id: string }>> {
  return withPlace(vaultDir, async (p) => {
    const repo = await openPlaceRepo(p, decrypt);
    return (await listSnapshots(repo)).map((s) => ({ ...s, vault_id: vaultIdOf(s) }));
  });
}

/**
 * The store's snapshots as a vault index (for `status`: ages per agent, drills), one record per
 * readable snapshot; `file` names its snapshot file in the store.
 */
export async function storeVaultIndex(vaultDir: string, decrypt?: DecryptOptions): Promise<VaultIndex> {
  const index = emptyIndex();
  for (const s of await listStoreVault(vaultDir, decrypt)) {
    if (s.error) continue;
    const snap: SnapshotRecord = {
      id: s.vault_id,
      file: `${STORE_DIR}/snapshots/${s.id}`,
      created_at: s.created_at ?? s.time,
      bytes: s.size,
      sha256: s.source?.sha256 ?? '',
      encrypted: !!s.source?.encrypted,
      agents: s.agents.map((a) => ({ id: a.id, name: a.name })),
      collections: [],
      probes: 0,
      secrets: false,
      tool_version: '',
    };
    index.snapshots.push(snap);
  }
  return index;
}

/**
 * `status` of a store vault: the ordinary rules over its snapshots (as an index), run log and
 * drill reports; in object storage those are read into a temp folder first.
 */
export async function storeVaultStatus(vault: string, policy: StatusPolicy, decrypt?: DecryptOptions): Promise<{ status: VaultStatus; index: VaultIndex }> {
  const index = await storeVaultIndex(vault, decrypt);
  if (!isS3Location(vault)) return { status: await vaultStatus(vault, policy, { index, present: () => true }), index };
  return withPlace(vault, async (p) => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-vault-status-'));
    try {
      const runs = await p.store.readBytes(RUN_LOG);
      if (runs) await fsp.writeFile(path.join(dir, RUN_LOG), runs);
      await fsp.mkdir(path.join(dir, DRILLS_DIR));
      for await (const o of p.store.list(`${DRILLS_DIR}/`)) {
        if (!o.key.endsWith('.json')) continue;
        const b = await p.store.readBytes(o.key);
        if (b) await fsp.writeFile(path.join(dir, DRILLS_DIR, path.basename(o.key)), b);
      }
      return { status: await vaultStatus(dir, policy, { index, present: () => true, label: p.vault }), index };
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// prune

export interface StorePruneVaultOptions {
  policy: RetentionPolicy;
  dryRun?: boolean;
  waitMs?: number;
  material?: KeyMaterial;
  /** tests: stops the sweep at a point as a kill would */
  faultHook?: (point: PruneFaultPoint) => void | Promise<void>;
}

export interface StorePruneVaultResult {
  dryRun: boolean;
  plan: RetentionPlan;
  /** vault ids */
  removed: Array<{ id: string; snapshot: string; created_at: string }>;
  kept: string[];
  /**
   * snapshots that fail the quick check (snapshot file unreadable, a pack they need missing or of
   * the wrong size, a chunk in no index): kept, not counted by the retention rules (vault ids)
   */
  unreadable: Array<{ id: string; reason: string }>;
  sweep: StorePruneResult | null;
  /** why the sweep did not run (the store is damaged: a sweep could lose what a repair needs) */
  sweepSkipped: string | null;
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * The quick check of a store before prune decides anything (checkRepo without reading the
 * packs): which snapshots are damaged (not counted by the retention rules, kept, reported) and
 * whether the store may be swept. A chunk in no index while unindexed packs exist (an index file
 * of an interrupted run lost) may be in one of them: its snapshot is not counted, but the sweep,
 * which adopts unindexed packs and checks every chunk again, still runs.
 */
async function preCheck(repo: Repo, snaps: readonly SnapshotInfo[]): Promise<{ damaged: Map<string, string>; blocking: string[] }> {
  const check = await checkRepo(repo, { readData: false });
  const damaged = new Map<string, string>();
  for (const s of snaps) if (s.error) damaged.set(s.id, s.error);
  const unindexed = check.warnings.some((w) => w.kind === 'unindexed-pack');
  const blocking: string[] = [];
  for (const p of check.problems) {
    for (const id of p.snapshots) if (!damaged.has(id)) damaged.set(id, p.message);
    if (!(p.kind === 'missing-blob' && unindexed)) blocking.push(p.message);
  }
  return { damaged, blocking };
}

/**
 * Retention, then the sweep; the caller holds the exclusive lock. In object storage
 * (`remoteCommand` set) it first waits for (or refuses while) live readers of the vault, so no
 * chunk a reader streams is deleted (./remote/lock.ts).
 */
async function pruneLocked(repo: Repo, opts: StorePruneVaultOptions, remoteCommand?: string): Promise<StorePruneVaultResult> {
  const snaps = await listSnapshots(repo);
  const { damaged, blocking } = await preCheck(repo, snaps);
  const unreadable = snaps.filter((s) => damaged.has(s.id)).map((s) => ({ id: s.error ? s.id : vaultIdOf(s), reason: damaged.get(s.id)! }));
  const good = snaps.filter((s) => !damaged.has(s.id));
  const byId = new Map(good.map((s) => [s.id, s]));
  const plan = planRetention(
    good.map((s) => ({ id: s.id, created_at: s.created_at ?? s.time, agents: s.agents.map((a) => a.id) })),
    opts.policy,
  );
  const removed = plan.remove.map((d) => ({ id: vaultIdOf(byId.get(d.id)!), snapshot: d.id, created_at: d.created_at }));
  const kept = plan.keep.map((d) => vaultIdOf(byId.get(d.id)!));
  const bytesBefore = await storeBytes(repo);
  const sweepSkipped = blocking.length ? `the store is damaged (${blocking.slice(0, 3).join('; ')}${blocking.length > 3 ? `; and ${blocking.length - 3} more` : ''}); no chunk was swept` : null;
  if (opts.dryRun) return { dryRun: true, plan, removed, kept, unreadable, sweep: null, sweepSkipped, bytesBefore, bytesAfter: bytesBefore };
  if (remoteCommand !== undefined) await waitForRemoteReaders(repo.store, { command: remoteCommand, waitMs: opts.waitMs, pollMs: remoteLockTimings.pollMs, staleMs: remoteLockTimings.staleMs });
  if (plan.remove.length)
    await forgetSnapshots(
      repo,
      plan.remove.map((d) => d.id),
    );
  if (sweepSkipped) return { dryRun: false, plan, removed, kept, unreadable, sweep: null, sweepSkipped, bytesBefore, bytesAfter: await storeBytes(repo) };
  let sweep: StorePruneResult;
  try {
    sweep = await pruneUnreferenced(repo, { faultHook: opts.faultHook });
  } catch (e) {
    // the snapshots the policy dropped are gone already: the message says so
    if (removed.length && e instanceof AgentVaultError && e.code === 'store-damaged') {
      throw new AgentVaultError('store-damaged', `${e.message}; the retention policy had already removed snapshot(s) ${removed.map((r) => r.id).join(', ')} (their chunks stay until a prune sweeps)`, {
        location: e.location,
        cause: e,
      });
    }
    throw e;
  }
  return { dryRun: false, plan, removed, kept, unreadable, sweep, sweepSkipped: null, bytesBefore, bytesAfter: await storeBytes(repo) };
}

/**
 * `prune` on a store vault: the retention policy picks the snapshots to forget (per agent, as for
 * a folder vault), then the sweep removes the chunks no kept snapshot references (mark and sweep,
 * repacking partly used packs). Under the exclusive lock; crash-safe (see pruneUnreferenced).
 */
export async function pruneStoreVault(vaultDir: string, opts: StorePruneVaultOptions): Promise<StorePruneVaultResult> {
  const started = new Date();
  return withPlace(vaultDir, async (p) => {
    const repo = await openPlaceRepo(p, opts.material ? decryptOptions(opts.material) : undefined);
    const command = opts.dryRun ? 'prune --dry-run' : 'prune';
    return withPlaceLock(p, { command, waitMs: opts.waitMs, deletes: !opts.dryRun }, async () => {
      try {
        const r = await pruneLocked(repo, opts, p.remote ? command : undefined);
        if (!r.dryRun)
          await placeRunLog(p, runLogRecord('prune', started, true, { removed: r.removed.map((x) => x.id), bytes_before: r.bytesBefore, bytes_after: r.bytesAfter })).catch(() => undefined);
        return r;
      } catch (e) {
        await placeRunLog(p, runLogRecord('prune', started, false, { error: { code: (e as { code?: string }).code ?? 'error', message: errorMessage(e) } })).catch(() => undefined);
        throw e;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// verify

/** A read-data subset: "n/m" (the n-th of m groups of packs, as restic) or a percentage "p%". */
export type ReadDataSubset = { part: number; of: number } | { fraction: number };

export function parseReadDataSubset(v: string): ReadDataSubset {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  if (m) {
    const part = Number(m[1]);
    const of = Number(m[2]);
    if (of >= 1 && of <= 256 && part >= 1 && part <= of) return { part, of };
  }
  const p = /^(\d+(?:\.\d+)?)%$/.exec(v.trim());
  if (p && Number(p[1]) > 0 && Number(p[1]) <= 100) return { fraction: Number(p[1]) / 100 };
  throw new AgentVaultError('usage', `a read-data subset must be "n/m" (1 ≤ n ≤ m ≤ 256) or a percentage like "10%", got "${v}"`, { kind: 'usage' });
}

export interface StoreVerifyOptions {
  readData?: boolean;
  readDataSubset?: ReadDataSubset;
  material?: KeyMaterial;
  waitMs?: number;
}

export interface StoreVerifyReport extends CheckReport {
  vault: string;
  /** store id → vault id, for the snapshots problems name */
  names: Record<string, string>;
  /** agent id → name */
  agentNames: Record<string, string | null>;
  duration_ms: number;
}

/**
 * `verify` on a store vault: every snapshot file, index and pack checked and every chunk a
 * snapshot needs found; with read-data (all or a subset) the packs are read and every chunk
 * authenticated and hashed. A damaged pack is reported with the snapshots and agents it affects.
 */
export async function verifyStoreVault(vaultDir: string, opts: StoreVerifyOptions = {}): Promise<StoreVerifyReport> {
  const t0 = Date.now();
  return withPlace(vaultDir, async (p) => {
    if (!(await placeIsStore(p))) throw noStore(p.vault);
    return withPlaceLock(p, { command: 'verify', waitMs: opts.waitMs, shared: true }, async () => {
      const repo = await openPlaceRepo(p, opts.material ? decryptOptions(opts.material) : undefined);
      const sub = opts.readDataSubset;
      const readData = opts.readData ? true : sub ? ('fraction' in sub ? sub.fraction : { part: sub.part, of: sub.of }) : false;
      const r = await checkRepo(repo, { readData });
      const names: Record<string, string> = {};
      const agentNames: Record<string, string | null> = {};
      for (const s of await listSnapshots(repo)) {
        names[s.id] = vaultIdOf(s);
        for (const a of s.agents) agentNames[a.id] = a.name;
      }
      return { ...r, vault: p.vault, names, agentNames, duration_ms: Date.now() - t0 };
    });
  });
}

// ---------------------------------------------------------------------------------------------
// migration

export interface MigrateOptions {
  material?: KeyMaterial;
  waitMs?: number;
  packSize?: number;
  onProgress?: (m: string) => void;
}

export interface MigrateResult {
  created: boolean;
  imported: Array<{ id: string; snapshot: string; bytesRead: number; bytesAdded: number }>;
  /** already in the store (same archive SHA-256) */
  skipped: string[];
  /** archives that could not be imported (reported, left in place) */
  failed: Array<{ id: string; file: string; reason: string }>;
  archiveBytes: number;
  storeBytes: number;
}

/**
 * Imports every snapshot archive the vault index lists into the vault's store (creating it, and
 * encrypting it when any archive is encrypted), each one read back from the store afterwards and
 * checked entry by entry against the archive's manifest. Idempotent (an archive already imported,
 * same SHA-256, is skipped). Never deletes or changes an archive or vault.json.
 */
export async function migrateToStore(vaultDir: string, opts: MigrateOptions = {}): Promise<MigrateResult> {
  requireLocalVault(vaultDir, 'vault migrate');
  const started = new Date();
  const progress = opts.onProgress ?? (() => undefined);
  const decrypt = opts.material ? decryptOptions(opts.material) : undefined;
  return withLock(vaultDir, { command: 'vault migrate', waitMs: opts.waitMs }, async () => {
    const index = await readIndex(vaultDir);
    let created = false;
    let repo: Repo;
    if (isStoreVault(vaultDir)) repo = await openVaultRepo(vaultDir, decrypt);
    else {
      const anyEncrypted = index.snapshots.some((s) => s.encrypted);
      let key: ArchiveKey | undefined;
      if (anyEncrypted) {
        if (!opts.material || opts.material.kind === 'none')
          throw new AgentVaultError(
            'no-key',
            `${vaultDir} holds encrypted snapshots; the store that receives them is encrypted with the vault's passphrase or key, which is needed; nothing was changed`,
            { kind: 'usage', remedy: 'key' },
          );
        key = (await writingKey(opts.material, index.kdf ?? null)).key;
      }
      repo = await initStore(storeOf(vaultDir), { prefix: `${STORE_DIR}/`, key, packSize: opts.packSize });
      created = true;
    }
    const present = new Set((await listSnapshots(repo)).map((s) => s.source?.sha256).filter((x): x is string => !!x));
    const res: MigrateResult = { created, imported: [], skipped: [], failed: [], archiveBytes: 0, storeBytes: 0 };
    const sorted = [...index.snapshots].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    for (const rec of sorted) {
      res.archiveBytes += rec.bytes;
      if (present.has(rec.sha256)) {
        res.skipped.push(rec.id);
        continue;
      }
      const file = snapshotPath(vaultDir, rec);
      progress(`importing ${rec.id}`);
      try {
        const r = await ingestArchive(repo, file, { decrypt, time: rec.created_at, sourceSha256: true });
        if (r.snapshotId && (await loadSnapshot(repo, r.snapshotId)).source.sha256 !== rec.sha256) {
          // the archive changed since the index recorded it: imported as it is now, reported
          res.failed.push({
            id: rec.id,
            file,
            reason: `the archive's SHA-256 differs from the one vault.json records (imported as it is now as store snapshot ${r.snapshotId}; run "agent-vault verify" on the old files)`,
          });
        }
        await verifyImported(repo, r.snapshotId, file, decrypt);
        res.imported.push({ id: rec.id, snapshot: r.snapshotId, bytesRead: r.bytesRead, bytesAdded: r.bytesAdded });
        present.add(rec.sha256);
      } catch (e) {
        res.failed.push({ id: rec.id, file, reason: errorMessage(e) });
      }
    }
    res.storeBytes = await storeBytes(repo);
    await appendRunLog(
      vaultDir,
      runLogRecord('vault migrate', started, res.failed.length === 0, { imported: res.imported.map((i) => i.id), skipped: res.skipped, failed: res.failed.map((f) => f.id) }),
    ).catch(() => undefined);
    return res;
  });
}

/** Reads an imported snapshot back from the store (every chunk) and compares it with the archive's manifest. */
async function verifyImported(repo: Repo, snapshotId: string, file: string, decrypt: DecryptOptions | undefined): Promise<void> {
  const reader = await openArchive(file, { decrypt });
  let manifest: Manifest;
  try {
    manifest = reader.manifest;
  } finally {
    await reader.close();
  }
  const snap = await loadSnapshot(repo, snapshotId);
  const names = snap.entries.map((e) => e.name).join('\n');
  if (names !== manifest.entries.map((e) => e.name).join('\n')) throw new AgentVaultError('checksum', `store snapshot ${snapshotId} does not list the entries of ${file}`);
  for (const e of snap.entries) {
    const m = manifest.entries.find((x) => x.name === e.name)!;
    if (!reader.encrypted && (m.size !== e.size || m.sha256 !== e.sha256)) throw new AgentVaultError('checksum', `store snapshot ${snapshotId}: entry ${e.name} differs from ${file}`);
    for await (const _ of entryContent(repo, snapshotId, e)) {
      // read through: entryContent checks the size and SHA-256 at the end
    }
  }
}

// ---------------------------------------------------------------------------------------------
// copy between store vaults

export interface StoreCopyOptions {
  /** only these snapshots (vault ids, unique prefixes, store ids, "latest") */
  snapshots?: string[];
  dryRun?: boolean;
  waitMs?: number;
  material?: KeyMaterial;
  onProgress?: (m: string) => void;
}

export interface StoreCopyResult extends CopySnapshotsResult {
  from: string;
  to: string;
  /** the target's store was created by this copy (its config copied from the source) */
  created: boolean;
  /** store id → vault id */
  names: Record<string, string>;
  copied: number;
  skipped: number;
}

/** Why `vault copy` between these two vaults is refused (a store vault on one side only), or null. */
function mixedCopyError(from: string, to: string, fromStore: boolean): AgentVaultError {
  return new AgentVaultError(
    'usage',
    fromStore
      ? `${from} is a store vault and ${to} is a folder of archives: "vault copy" does not convert between them; nothing was copied`
      : `${from} is a folder of archives and ${to} is a store vault: "vault copy" does not convert between them; nothing was copied`,
    {
      kind: 'usage',
      remedy: fromStore ? 'export-snapshot' : 'init-store',
      hint: fromStore ? 'or copy to another store vault' : 'then copy that store vault',
    },
  );
}

/**
 * `vault copy` when a side is a store vault (folder or s3://): the target is another copy of the
 * same store (created when the target location is empty: its config is copied, so the same
 * passphrase or key opens both), and only the packs, index entries and snapshot files it lacks
 * are copied, each checked against its SHA-256 (./store/repo.ts copySnapshots). Under the
 * target's exclusive lock (and the source's shared lock: a folder's, or a reader lock in the
 * bucket); logged in the target's run log.
 * A store vault and a folder of archives are not converted into each other (error 'usage').
 */
export async function copyStoreVault(from: string, to: string, opts: StoreCopyOptions = {}): Promise<StoreCopyResult> {
  const started = new Date();
  const decrypt = opts.material ? decryptOptions(opts.material) : undefined;
  return withPlace(from, (src) =>
    withPlace(to, async (dst) => {
      const srcStore = await placeIsStore(src);
      const dstStore = await placeIsStore(dst);
      const dstFolderVault = (await dst.store.head('vault.json')) !== null;
      if (!srcStore) {
        if ((await src.store.head('vault.json')) === null) throw new AgentVaultError('no-vault', `${src.vault} is not a vault (no ${STORE_DIR}/config.json, no vault.json)`, { kind: 'usage' });
        throw mixedCopyError(src.vault, dst.vault, false);
      }
      if (!dstStore && dstFolderVault) throw mixedCopyError(src.vault, dst.vault, true);
      // the source's index is read under its shared lock (a prune of the source waits meanwhile)
      const run = async (): Promise<StoreCopyResult> => {
        const srcRepo = await openPlaceRepo(src, decrypt);
        let created = false;
        let dstRepo: Repo;
        if (await placeIsStore(dst)) dstRepo = await openPlaceRepo(dst, decrypt);
        else {
          if (opts.dryRun) {
            dstRepo = { ...srcRepo, store: dst.store, index: new BlobIndex(), packs: new Map(), indexFiles: [], damagedIndexes: [] };
          } else {
            // the target becomes a copy of the source's store: the same config, byte for byte
            const key = `${STORE_DIR}/config.json`;
            const cfg = await src.store.readBytes(key);
            if (!cfg) throw noStore(src.vault);
            if (!(await dst.store.writeBytes(key, cfg, { ifAbsent: true }))) throw new AgentVaultError('exists', `${dst.vault}/${key} appeared meanwhile; nothing was copied`, { kind: 'usage' });
            created = true;
            dstRepo = await openPlaceRepo(dst, decrypt);
          }
        }
        const all = await listSnapshots(srcRepo);
        const unreadable = all.filter((s) => s.error);
        if (unreadable.length && !opts.snapshots?.length) {
          throw new AgentVaultError('store-damaged', `${src.vault}: snapshot file(s) ${unreadable.map((s) => s.id).join(', ')} cannot be read (${unreadable[0].error}); nothing was copied`, {
            remedy: 'verify-vault',
          });
        }
        const chosen = opts.snapshots?.length ? [...new Set(opts.snapshots.map((r) => findStoreSnapshot(all, r, src.vault)))] : all.filter((s) => !s.error);
        const names: Record<string, string> = {};
        for (const s of chosen) names[s.id] = vaultIdOf(s);
        const r = await copySnapshots(
          srcRepo,
          dstRepo,
          chosen.map((s) => s.id),
          { dryRun: opts.dryRun, onProgress: opts.onProgress },
        );
        return {
          ...r,
          from: src.vault,
          to: dst.vault,
          created,
          names,
          copied: r.items.filter((i) => i.action === 'copied').length,
          skipped: r.items.filter((i) => i.action === 'skipped').length,
        };
      };
      const locked = (): Promise<StoreCopyResult> => withPlaceLock(src, { command: 'vault copy (source)', waitMs: opts.waitMs, shared: true }, run);
      if (!dst.remote && !opts.dryRun) await ensureVaultDirs(dst.vault);
      let res: StoreCopyResult | undefined;
      try {
        res = opts.dryRun ? await locked() : await withPlaceLock(dst, { command: 'vault copy', waitMs: opts.waitMs }, locked);
        return res;
      } catch (e) {
        res = undefined;
        if (!opts.dryRun && !(e instanceof AgentVaultError && e.code === 'locked'))
          await placeRunLog(dst, runLogRecord('copy', started, false, { from: src.vault, error: { code: (e as { code?: string }).code ?? 'internal', message: errorMessage(e) } })).catch(
            () => undefined,
          );
        throw e;
      } finally {
        if (res && !opts.dryRun)
          await placeRunLog(dst, runLogRecord('copy', started, true, { from: src.vault, copied: res.copied, skipped: res.skipped, packs: res.packsCopied, bytes: res.bytesCopied })).catch(
            () => undefined,
          );
      }
    }),
  );
}
