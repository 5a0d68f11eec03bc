/**
 * The vault: a folder of snapshot archives with an index.
 *
 *   <vault>/vault.json            the index: a cache of what the archives say (the archives are the
 *                                 truth; `rebuildIndex` in ./reconcile.ts rebuilds it from them)
 *   <vault>/snapshots/<id>.avsnap snapshot archives (docs/FORMAT.md), written to a temp file and renamed
 *   <vault>/drills/               drill reports (<snapshot>-<time>.json / .md)
 *   <vault>/runs.jsonl            run log: one JSON line per backup / prune (interrupted runs too)
 *   <vault>/.lock                 exclusive lock of a running backup / prune / rebuild-index
 *                                 (pid + process start time + boot id + host; heartbeat = mtime)
 *   <vault>/.readers/<token>.json shared locks of running drills / verifies (prune waits for them)
 *   <vault>/.tmp/                 scratch space of a running backup (same file system as snapshots/)
 *
 * Crash safety: an archive becomes visible only by the atomic rename at the end of its write, and
 * it becomes a snapshot only when the index (itself written atomically: temp file, fsync, rename)
 * lists it. A backup killed at any point leaves at most a temp file (removed by the next run: only
 * names of this project's own temp-file patterns) or a complete unlisted archive (verified and
 * listed again by the next run — never deleted); readers never see a partial snapshot.
 */
import { promises as fsp, readFileSync, unlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { AgentVaultError, errorMessage } from '../core/errors';
import { exists, ioError, writeFileAtomic } from '../core/fs';
import type { ManifestAgentCounts } from '../format/archive';
import type { KdfDescription } from '../format/crypto';

export const VAULT_INDEX = 'vault.json';
export const VAULT_INDEX_FORMAT = 'agent-vault-index';
export const VAULT_INDEX_VERSION = 1;
export const SNAPSHOTS_DIR = 'snapshots';
export const DRILLS_DIR = 'drills';
export const TMP_DIR = '.tmp';
export const LOCK_FILE = '.lock';
export const RUN_LOG = 'runs.jsonl';
export const SNAPSHOT_EXT = '.avsnap';

export interface SnapshotAgent {
  id: string;
  name: string | null;
  counts?: ManifestAgentCounts;
}

export interface SnapshotRecord {
  id: string;
  /** Relative to the vault folder, '/'-separated. */
  file: string;
  created_at: string;
  bytes: number;
  /** sha256 of the whole archive file, recorded when it was written. */
  sha256: string;
  encrypted: boolean;
  agents: SnapshotAgent[];
  collections: string[];
  /** Number of recorded vector probes (0 when no agent had passages with embeddings). */
  probes: number;
  secrets: boolean;
  tool_version: string;
  duration_ms?: number;
}

export interface VaultIndex {
  format: typeof VAULT_INDEX_FORMAT;
  version: number;
  created_at: string;
  /** scrypt parameters and salt shared by the vault's passphrase-encrypted snapshots (one key derivation per run). */
  kdf?: KdfDescription | null;
  snapshots: SnapshotRecord[];
}

export function emptyIndex(): VaultIndex {
  return { format: VAULT_INDEX_FORMAT, version: VAULT_INDEX_VERSION, created_at: new Date().toISOString(), kdf: null, snapshots: [] };
}

export function indexPath(vaultDir: string): string {
  return path.join(vaultDir, VAULT_INDEX);
}

export function snapshotPath(vaultDir: string, rec: Pick<SnapshotRecord, 'file'>): string {
  return path.join(vaultDir, ...rec.file.split('/'));
}

/** A new snapshot id: the UTC time (sortable, file-name safe) plus a random suffix. */
export function newSnapshotId(at: Date = new Date()): string {
  const iso = at.toISOString(); // 2026-03-01T12:00:00.123Z
  const compact = `${iso.slice(0, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return `${compact}-${randomBytes(3).toString('hex')}`;
}

function indexError(file: string, why: string): AgentVaultError {
  return new AgentVaultError('vault-index', `${file}: ${why}`, {
    location: { file },
    remedy: 'rebuild-index',
    hint: `the vault index is only a cache of the archives in ${path.dirname(file)}: a rebuild keeps the damaged file as vault.json.damaged-<time>`,
  });
}

/** Reads the index; a folder without one is an empty vault (when `allowMissing`). */
export async function readIndex(vaultDir: string, opts: { allowMissing?: boolean } = {}): Promise<VaultIndex> {
  const file = indexPath(vaultDir);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      if (opts.allowMissing) return emptyIndex();
      throw new AgentVaultError('no-vault', `${vaultDir} is not a vault (it has no ${VAULT_INDEX})`, {
        location: { file: vaultDir },
        kind: 'usage',
        remedy: ['rebuild-index', 'create-vault', 'vault'],
        hint: `if ${path.join(vaultDir, SNAPSHOTS_DIR)} holds snapshot archives, the index can be rebuilt from them; otherwise a first backup creates the vault, or the vault is elsewhere`,
      });
    }
    throw ioError(e, file, 'read');
  }
  return parseIndexText(text, file);
}

/** Parses and checks an index read from `file` (a path, or an object's location in a remote vault). */
export function parseIndexText(text: string, file: string): VaultIndex {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw indexError(file, `invalid JSON: ${errorMessage(e)}`);
  }
  const o = v as Partial<VaultIndex> | null;
  if (!o || typeof o !== 'object' || o.format !== VAULT_INDEX_FORMAT) throw indexError(file, `not an Agent Vault index ("format" is ${JSON.stringify(o?.format)})`);
  if (typeof o.version !== 'number' || o.version > VAULT_INDEX_VERSION) {
    throw new AgentVaultError('format-version', `${file}: written by a newer Agent Vault (index version ${String(o.version)}); upgrade Agent Vault`, { location: { file } });
  }
  if (!Array.isArray(o.snapshots)) throw indexError(file, '"snapshots" must be an array');
  o.snapshots.forEach((s, i) => {
    if (!s || typeof s.id !== 'string' || typeof s.file !== 'string' || typeof s.created_at !== 'string' || !Array.isArray(s.agents)) {
      throw indexError(file, `snapshots[${i}] is incomplete (needs id, file, created_at, agents)`);
    }
    if (s.file.split('/').some((seg) => seg === '..' || seg === '') || path.isAbsolute(s.file)) throw indexError(file, `snapshots[${i}].file ${JSON.stringify(s.file)} is not a path inside the vault`);
    s.collections ??= [];
  });
  return o as VaultIndex;
}

export async function writeIndex(vaultDir: string, index: VaultIndex): Promise<void> {
  index.snapshots.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1));
  await writeFileAtomic(indexPath(vaultDir), JSON.stringify(index, null, 2) + '\n', { overwrite: true });
}

/** Creates the vault's folders (idempotent). */
export async function ensureVaultDirs(vaultDir: string): Promise<void> {
  for (const d of [vaultDir, path.join(vaultDir, SNAPSHOTS_DIR), path.join(vaultDir, DRILLS_DIR), path.join(vaultDir, TMP_DIR)]) {
    try {
      await fsp.mkdir(d, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw ioError(e, d, 'create');
    }
  }
}

/**
 * Finds a snapshot by id, unique id prefix, or "latest" (optionally the latest holding `agent`).
 */
export function findSnapshot(index: VaultIndex, ref: string, vaultDir = 'vault'): SnapshotRecord {
  const snaps = [...index.snapshots].sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1));
  if (ref === 'latest') {
    const s = snaps[snaps.length - 1];
    if (!s) throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshots yet`, { kind: 'usage' });
    return s;
  }
  const exact = snaps.find((s) => s.id === ref);
  if (exact) return exact;
  const prefixed = snaps.filter((s) => s.id.startsWith(ref));
  if (prefixed.length === 1) return prefixed[0];
  if (prefixed.length > 1)
    throw new AgentVaultError(
      'usage',
      `snapshot "${ref}" is ambiguous: ${prefixed
        .map((s) => s.id)
        .slice(0, 5)
        .join(', ')}${prefixed.length > 5 ? ', …' : ''}`,
      { kind: 'usage' },
    );
  throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshot "${ref}"`, { kind: 'usage', remedy: 'list-snapshots' });
}

// ---------------------------------------------------------------------------------------------
// lock

/** Directory of the shared (reader) locks of running drills and verifies: `<vault>/.readers/<token>.json`. */
export const READERS_DIR = '.readers';
/** How often a holder refreshes its lock file's mtime (the heartbeat). */
export const LOCK_HEARTBEAT_MS = 30_000;
/** A lock of another host (whose process cannot be checked) without a heartbeat for this long is stale. */
export const FOREIGN_LOCK_STALE_MS = 10 * 60_000;

export interface LockInfo {
  pid: number;
  host: string;
  started_at: string;
  command: string;
  token: string;
  /** Start time of the process (Linux: /proc/<pid>/stat field 22, clock ticks since boot); null elsewhere. */
  proc_start?: string | null;
  /** Linux boot id (/proc/sys/kernel/random/boot_id): a start time is only meaningful within one boot. */
  boot_id?: string | null;
  /** 'exclusive' (backup, prune, rebuild-index, catalog writes) or 'shared' (drill, verify). */
  mode?: 'exclusive' | 'shared';
}

export interface VaultLock {
  readonly info: LockInfo;
  readonly path: string;
  /** Removes the lock (only if it is still ours). Idempotent. */
  release(): Promise<void>;
  /** Synchronous release, for exit/signal handlers. */
  releaseSync(): void;
}

export interface LockOptions {
  command: string;
  /** How long to wait for a running operation to finish (default 0: refuse at once). */
  waitMs?: number;
  pollMs?: number;
  /** A lock of another host without a heartbeat for this long is considered stale (default 10 min). */
  foreignStaleMs?: number;
  /** Heartbeat interval (default 30 s). */
  heartbeatMs?: number;
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/<pid>/stat (the process start time in clock ticks since boot); null when unknown. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may contain spaces: split after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = rest[22 - 3];
    return v && /^\d+$/.test(v) ? v : null;
  } catch {
    return null;
  }
}

let bootIdCache: string | null | undefined;
function bootId(): string | null {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootIdCache = null;
    }
  }
  return bootIdCache;
}

export function newLockInfo(command: string, mode: 'exclusive' | 'shared'): LockInfo {
  return {
    pid: process.pid,
    host: os.hostname(),
    started_at: new Date().toISOString(),
    command,
    token: randomBytes(8).toString('hex'),
    proc_start: processStartTime(process.pid),
    boot_id: bootId(),
    mode,
  };
}

/** A lock as found: its content (null when unreadable) and when its holder last showed life. */
export interface HeldLock {
  info: LockInfo | null;
  mtimeMs: number;
}

async function readLockInfo(file: string): Promise<HeldLock | null> {
  try {
    const [text, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    let info: LockInfo | null = null;
    try {
      const v = JSON.parse(text) as LockInfo;
      if (v && typeof v.pid === 'number' && typeof v.token === 'string') info = v;
    } catch {
      /* being written, or damaged */
    }
    return { info, mtimeMs: st.mtimeMs };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(e, file, 'read');
  }
}

/**
 * Why an existing lock is stale, or null when its holder may still be running. Same host: the
 * process is gone, or the pid now belongs to another process (its start time differs from the
 * recorded one), or the lock was taken before the last reboot. Another host: no heartbeat (mtime
 * refresh) for `foreignStaleMs`.
 */
export function staleReason(held: HeldLock, foreignStaleMs: number = FOREIGN_LOCK_STALE_MS): string | null {
  const age = Date.now() - held.mtimeMs;
  if (!held.info) return age > 10_000 ? 'its lock file is unreadable and older than 10 s' : null;
  const h = held.info;
  if (h.host === os.hostname()) {
    if (h.boot_id && bootId() && h.boot_id !== bootId()) return `it was taken before the machine restarted (process ${h.pid})`;
    if (!pidAlive(h.pid)) return `process ${h.pid} is gone`;
    if (h.proc_start) {
      const now = processStartTime(h.pid);
      if (now !== null && now !== h.proc_start) return `process ${h.pid} is gone (the pid now belongs to another process)`;
      return null;
    }
    // no recorded start time (another platform): fall back to the heartbeat
    return age > foreignStaleMs ? `its heartbeat stopped ${Math.round(age / 60000)} min ago` : null;
  }
  return age > foreignStaleMs ? `it was taken on host ${h.host} and its heartbeat stopped ${Math.round(age / 60000)} min ago` : null;
}

function lockedError(vaultDir: string, file: string, h: LockInfo | null): AgentVaultError {
  const what = h?.mode === 'shared' ? 'in use by' : 'locked by';
  return new AgentVaultError(
    'locked',
    h
      ? `the vault ${vaultDir} is ${what} "${h.command}" (pid ${h.pid} on ${h.host}, since ${h.started_at}); not starting a second run`
      : `the vault ${vaultDir} is locked (${file}); not starting a second run`,
    { location: { file }, kind: 'locked', ...(h && h.host === os.hostname() ? { remedy: 'wait' } : { hint: `if no run is active on ${h?.host ?? 'any host'}, remove ${file}` }) },
  );
}

/** Live shared locks (stale ones are removed on the way). */
async function liveReaders(vaultDir: string, foreignStaleMs: number): Promise<Array<{ file: string; info: LockInfo }>> {
  const dir = path.join(vaultDir, READERS_DIR);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(e, dir, 'read');
  }
  const out: Array<{ file: string; info: LockInfo }> = [];
  for (const n of names) {
    if (!/^[0-9a-f]{16}\.json$/.test(n)) continue;
    const file = path.join(dir, n);
    const held = await readLockInfo(file);
    if (!held) continue;
    if (staleReason(held, foreignStaleMs)) {
      await fsp.rm(file, { force: true }).catch(() => undefined);
      continue;
    }
    if (held.info) out.push({ file, info: held.info });
  }
  return out;
}

async function writeExclusive(file: string, info: LockInfo): Promise<boolean> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'wx', 0o600);
    await fh.writeFile(JSON.stringify(info) + '\n');
    await fh.sync();
    await fh.close();
    return true;
  } catch (e) {
    await fh?.close().catch(() => undefined);
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    if (fh) await fsp.rm(file, { force: true }).catch(() => undefined);
    throw ioError(e, file, 'create');
  }
}

/**
 * Takes the vault's exclusive lock: `<vault>/.lock` created with O_EXCL holding pid, host, the
 * process's start time, boot id, start time and command; refreshed by a heartbeat. A stale lock
 * (see staleReason) is broken. The lock is only held when no live shared lock (drill, verify)
 * exists either. Otherwise waits up to `waitMs`, then fails with 'locked' naming the holder.
 */
export async function acquireLock(vaultDir: string, opts: LockOptions): Promise<VaultLock> {
  const file = path.join(vaultDir, LOCK_FILE);
  const info = newLockInfo(opts.command, 'exclusive');
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const pollMs = opts.pollMs ?? 200;
  const foreignStaleMs = opts.foreignStaleMs ?? FOREIGN_LOCK_STALE_MS;
  for (;;) {
    let blocker: LockInfo | null;
    if (await writeExclusive(file, info)) {
      const lock = makeLock(file, info, opts.heartbeatMs);
      const readers = await liveReaders(vaultDir, foreignStaleMs);
      if (readers.length === 0) return lock;
      await lock.release();
      blocker = readers[0].info;
    } else {
      const held = await readLockInfo(file);
      if (!held) continue; // released meanwhile
      if (staleReason(held, foreignStaleMs)) {
        await breakStaleLock(file, held.info);
        continue;
      }
      blocker = held.info;
    }
    if (Date.now() >= deadline) throw lockedError(vaultDir, file, blocker);
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}

/**
 * Takes a shared lock (drill, verify): several may be held at once, but not together with the
 * exclusive lock, so prune cannot delete a snapshot a drill is reading. The reader publishes
 * `<vault>/.readers/<token>.json`, then checks the exclusive lock (which, symmetrically, checks
 * the readers after creating `.lock`): at least one of two racing takers sees the other.
 */
export async function acquireSharedLock(vaultDir: string, opts: LockOptions): Promise<VaultLock> {
  const excl = path.join(vaultDir, LOCK_FILE);
  const dir = path.join(vaultDir, READERS_DIR);
  const info = newLockInfo(opts.command, 'shared');
  const file = path.join(dir, `${info.token}.json`);
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const pollMs = opts.pollMs ?? 200;
  const foreignStaleMs = opts.foreignStaleMs ?? FOREIGN_LOCK_STALE_MS;
  const exclusiveHolder = async (): Promise<LockInfo | null | undefined> => {
    for (;;) {
      const held = await readLockInfo(excl);
      if (!held) return undefined;
      if (!staleReason(held, foreignStaleMs)) return held.info;
      await breakStaleLock(excl, held.info);
    }
  };
  for (;;) {
    let blocker = await exclusiveHolder();
    if (blocker === undefined) {
      try {
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        await writeExclusive(file, info);
      } catch (e) {
        // a read-only vault (e.g. a mounted off-site copy): nothing can delete from it either
        const code = ((e as AgentVaultError).cause as NodeJS.ErrnoException | undefined)?.code ?? (e as NodeJS.ErrnoException).code;
        if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') return { info, path: file, release: async () => undefined, releaseSync: () => undefined };
        throw ioError(e, dir, 'create');
      }
      const lock = makeLock(file, info, opts.heartbeatMs);
      blocker = await exclusiveHolder();
      if (blocker === undefined) return lock;
      await lock.release();
    }
    if (Date.now() >= deadline) throw lockedError(vaultDir, excl, blocker);
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}

/**
 * Removes a stale lock without a race against a new holder: the lock file is renamed away
 * atomically, and if what was moved is not the stale lock that was inspected (someone took the
 * lock in between), it is put back.
 */
async function breakStaleLock(file: string, staleInfo: LockInfo | null): Promise<void> {
  const moved = `${file}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.rename(file, moved);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw ioError(e, file, 'write');
  }
  const got = await readLockInfo(moved);
  const same = staleInfo ? got?.info?.token === staleInfo.token : !got?.info;
  if (!same) {
    await fsp.link(moved, file).catch(() => undefined);
  }
  await fsp.rm(moved, { force: true }).catch(() => undefined);
}

function makeLock(file: string, info: LockInfo, heartbeatMs = LOCK_HEARTBEAT_MS): VaultLock {
  let released = false;
  const ours = (text: string): boolean => {
    try {
      return (JSON.parse(text) as LockInfo).token === info.token;
    } catch {
      return false;
    }
  };
  // heartbeat: refresh the mtime while the lock is ours (another host judges staleness by it)
  const beat = setInterval(() => {
    fsp
      .readFile(file, 'utf8')
      .then((t) => (ours(t) && !released ? fsp.utimes(file, new Date(), new Date()) : undefined))
      .catch(() => undefined);
  }, heartbeatMs);
  beat.unref();
  return {
    info,
    path: file,
    async release() {
      if (released) return;
      released = true;
      clearInterval(beat);
      try {
        if (ours(await fsp.readFile(file, 'utf8'))) await fsp.rm(file, { force: true });
      } catch {
        /* gone already */
      }
    },
    releaseSync() {
      if (released) return;
      released = true;
      clearInterval(beat);
      try {
        if (ours(readFileSync(file, 'utf8'))) unlinkSync(file);
      } catch {
        /* gone already */
      }
    },
  };
}

/** Who holds the exclusive lock now (null when free or stale). */
export async function lockHolder(vaultDir: string): Promise<LockInfo | null> {
  const held = await readLockInfo(path.join(vaultDir, LOCK_FILE));
  if (!held?.info) return null;
  return staleReason(held) ? null : held.info;
}

/** Every lock held now: the exclusive holder (if any) and the live shared holders. Removes nothing. */
export async function lockHolders(vaultDir: string): Promise<{ exclusive: LockInfo | null; shared: LockInfo[]; stale: Array<{ file: string; holder: LockInfo | null; reason: string }> }> {
  const stale: Array<{ file: string; holder: LockInfo | null; reason: string }> = [];
  const excl = path.join(vaultDir, LOCK_FILE);
  const held = await readLockInfo(excl);
  let exclusive: LockInfo | null = null;
  if (held) {
    const why = staleReason(held);
    if (why) stale.push({ file: LOCK_FILE, holder: held.info, reason: why });
    else exclusive = held.info;
  }
  const shared: LockInfo[] = [];
  for (const n of await fsp.readdir(path.join(vaultDir, READERS_DIR)).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{16}\.json$/.test(n)) continue;
    const h = await readLockInfo(path.join(vaultDir, READERS_DIR, n));
    if (!h) continue;
    const why = staleReason(h);
    if (why) stale.push({ file: `${READERS_DIR}/${n}`, holder: h.info, reason: why });
    else if (h.info) shared.push(h.info);
  }
  return { exclusive, shared, stale };
}

/** Runs `fn` holding the vault lock; the lock is released however `fn` ends. */
export async function withLock<T>(vaultDir: string, opts: LockOptions, fn: (lock: VaultLock) => Promise<T>): Promise<T> {
  const lock = await acquireLock(vaultDir, opts);
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}

/** Runs `fn` holding a shared lock (drill, verify). */
export async function withSharedLock<T>(vaultDir: string, opts: LockOptions, fn: (lock: VaultLock) => Promise<T>): Promise<T> {
  const lock = await acquireSharedLock(vaultDir, opts);
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}

// ---------------------------------------------------------------------------------------------
// temp files

/** The archive writer's temp file of a snapshot this project names: `<id>.avsnap.tmp-<12 hex>`. */
export const SNAPSHOT_TEMP = /^\d{4}-\d{2}-\d{2}T\d{6}Z-[0-9a-f]{6}\.avsnap\.tmp-[0-9a-f]{12}$/;
/** A snapshot file name this project writes: `<id>.avsnap`. */
export const SNAPSHOT_NAME = /^(\d{4}-\d{2}-\d{2}T\d{6}Z-[0-9a-f]{6})\.avsnap$/;
/**
 * writeFileAtomic's temp file of the index (`vault.json.tmp-<12 hex>`; `.vault.json.tmp-<12 hex>`
 * from versions before the one temp-name pattern), and a stale lock being broken.
 */
const VAULT_TEMP = [/^\.?vault\.json\.tmp-[0-9a-f]{12}$/, /^\.lock\.stale-[0-9a-f]{8}$/];

/**
 * Removes temp files that interrupted runs of this project left behind — only names of its own
 * patterns: `snapshots/<id>.avsnap.tmp-<hex>`, `vault.json.tmp-<hex>`, `.lock.stale-<hex>`, and
 * the contents of the vault's own scratch folder `.tmp/`. Never an archive (`*.avsnap`), never a
 * file of another name (those are reported by verify and status). Call only while holding a lock
 * (exclusive or shared: no writer of this project runs then).
 */
export async function sweepTempFiles(vaultDir: string): Promise<string[]> {
  const removed: string[] = [];
  const snapDir = path.join(vaultDir, SNAPSHOTS_DIR);
  for (const n of await fsp.readdir(snapDir).catch(() => [] as string[])) {
    if (!SNAPSHOT_TEMP.test(n)) continue;
    await fsp.rm(path.join(snapDir, n), { force: true });
    removed.push(`${SNAPSHOTS_DIR}/${n}`);
  }
  const tmp = path.join(vaultDir, TMP_DIR);
  if (await exists(tmp)) {
    for (const n of await fsp.readdir(tmp)) {
      await fsp.rm(path.join(tmp, n), { force: true, recursive: true });
      removed.push(`${TMP_DIR}/${n}`);
    }
  }
  for (const n of await fsp.readdir(vaultDir).catch(() => [] as string[])) {
    if (VAULT_TEMP.some((re) => re.test(n))) {
      await fsp.rm(path.join(vaultDir, n), { force: true });
      removed.push(n);
    }
  }
  return removed;
}

/** Files in snapshots/ the index does not list, split into archives and other files (nothing is removed). */
export async function unlistedFiles(vaultDir: string, index: VaultIndex): Promise<{ archives: string[]; temp: string[]; other: string[] }> {
  const listed = new Set(index.snapshots.map((s) => path.resolve(snapshotPath(vaultDir, s))));
  const out = { archives: [] as string[], temp: [] as string[], other: [] as string[] };
  for (const n of (await fsp.readdir(path.join(vaultDir, SNAPSHOTS_DIR)).catch(() => [] as string[])).sort()) {
    const p = path.join(vaultDir, SNAPSHOTS_DIR, n);
    if (listed.has(path.resolve(p))) continue;
    const rel = `${SNAPSHOTS_DIR}/${n}`;
    if (SNAPSHOT_TEMP.test(n)) out.temp.push(rel);
    else if (n.endsWith(SNAPSHOT_EXT)) out.archives.push(rel);
    else out.other.push(rel);
  }
  return out;
}
// ---------------------------------------------------------------------------------------------
// run log

export interface RunLogRecord {
  run_id: string;
  command: 'backup' | 'prune' | 'verify' | 'drill' | string;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  ok: boolean;
  host: string;
  pid: number;
  snapshot?: string | null;
  error?: { code: string; message: string } | null;
  [k: string]: unknown;
}

/** A run-log line for `command`, started at `started` and ending now, with its own fields. */
export function runLogRecord(command: string, started: Date, ok: boolean, fields: Record<string, unknown> = {}, runId: string = newRunId()): RunLogRecord {
  const finished = new Date();
  return {
    run_id: runId,
    command,
    started_at: started.toISOString(),
    finished_at: finished.toISOString(),
    duration_ms: finished.getTime() - started.getTime(),
    ok,
    host: os.hostname(),
    pid: process.pid,
    ...fields,
  };
}

/** Appends one JSON line to `<vault>/runs.jsonl` (O_APPEND; one write per record). */
export async function appendRunLog(vaultDir: string, rec: RunLogRecord): Promise<void> {
  const file = path.join(vaultDir, RUN_LOG);
  try {
    await fsp.appendFile(file, JSON.stringify(rec) + '\n', { mode: 0o600 });
  } catch (e) {
    throw ioError(e, file, 'write');
  }
}

/** The run log, oldest first (damaged lines are skipped). */
export async function readRunLog(vaultDir: string, opts: { last?: number } = {}): Promise<RunLogRecord[]> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(vaultDir, RUN_LOG), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(e, path.join(vaultDir, RUN_LOG), 'read');
  }
  const out: RunLogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as RunLogRecord);
    } catch {
      /* a line cut short by a crash */
    }
  }
  return opts.last ? out.slice(-opts.last) : out;
}

export function newRunId(): string {
  return `run-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}
