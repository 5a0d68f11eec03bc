/**
 * The vault: a folder of snapshot archives with an index.
 *
 *   <vault>/vault.json            the index (source of truth: a snapshot exists when it is listed here)
 *   <vault>/snapshots/<id>.avsnap snapshot archives (docs/FORMAT.md), written to a temp file and renamed
 *   <vault>/drills/               drill reports (<snapshot>-<time>.json / .md); each drill writes its own
 *                                 files, so a drill never needs the lock
 *   <vault>/runs.jsonl            run log: one JSON line per backup / prune / verify / drill
 *   <vault>/.lock                 exclusive lock of a running backup / prune (pid + host + start)
 *   <vault>/.tmp/                 scratch space of a running backup (same file system as snapshots/)
 *
 * Crash safety: an archive becomes visible only by the atomic rename at the end of its write, and
 * it becomes a snapshot only when the index (itself written atomically: temp file, fsync, rename)
 * lists it. A backup killed at any point leaves at most a temp file or an unlisted archive, which
 * the next run (holding the lock) removes; readers never see a partial snapshot.
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
  return new AgentVaultError('vault-index', `${file}: ${why}`, { location: { file }, hint: 'the vault index is damaged; restore vault.json from a copy or rebuild it' });
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
        exitCode: 2,
        hint: 'run "agent-vault backup --config <file>" to create it, or check --vault',
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
    if (!s) throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshots yet`, { exitCode: 2 });
    return s;
  }
  const exact = snaps.find((s) => s.id === ref);
  if (exact) return exact;
  const prefixed = snaps.filter((s) => s.id.startsWith(ref));
  if (prefixed.length === 1) return prefixed[0];
  if (prefixed.length > 1) throw new AgentVaultError('usage', `snapshot "${ref}" is ambiguous: ${prefixed.map((s) => s.id).slice(0, 5).join(', ')}${prefixed.length > 5 ? ', …' : ''}`, { exitCode: 2 });
  throw new AgentVaultError('no-snapshot', `${vaultDir} has no snapshot "${ref}"`, { exitCode: 2, hint: 'list them with "agent-vault status --snapshots"' });
}

// ---------------------------------------------------------------------------------------------
// lock

export interface LockInfo {
  pid: number;
  host: string;
  started_at: string;
  command: string;
  token: string;
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
  /** A lock of another host older than this is considered stale (default 24 h). */
  foreignStaleMs?: number;
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

async function readLockInfo(file: string): Promise<{ info: LockInfo | null; mtimeMs: number } | null> {
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

/** Why an existing lock is stale, or null when its holder may still be running. */
function staleReason(held: { info: LockInfo | null; mtimeMs: number }, foreignStaleMs: number): string | null {
  const age = Date.now() - held.mtimeMs;
  if (!held.info) return age > 10_000 ? 'its lock file is unreadable and older than 10 s' : null;
  if (held.info.host === os.hostname()) return pidAlive(held.info.pid) ? null : `process ${held.info.pid} is gone`;
  return age > foreignStaleMs ? `it was taken on host ${held.info.host} more than ${Math.round(foreignStaleMs / 3600000)} h ago` : null;
}

/**
 * Takes the vault's exclusive lock: `<vault>/.lock` created with O_EXCL holding pid, host, start
 * time and command. A lock whose process is gone (same host) is stale and is broken; otherwise
 * waits up to `waitMs`, then fails with 'locked' naming the holder.
 */
export async function acquireLock(vaultDir: string, opts: LockOptions): Promise<VaultLock> {
  const file = path.join(vaultDir, LOCK_FILE);
  const info: LockInfo = { pid: process.pid, host: os.hostname(), started_at: new Date().toISOString(), command: opts.command, token: randomBytes(8).toString('hex') };
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const pollMs = opts.pollMs ?? 200;
  for (;;) {
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(file, 'wx', 0o600);
      await fh.writeFile(JSON.stringify(info) + '\n');
      await fh.sync();
      await fh.close();
      return makeLock(file, info);
    } catch (e) {
      await fh?.close().catch(() => undefined);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        if (fh) await fsp.rm(file, { force: true }).catch(() => undefined);
        throw ioError(e, file, 'create');
      }
    }
    const held = await readLockInfo(file);
    if (!held) continue; // released meanwhile
    const stale = staleReason(held, opts.foreignStaleMs ?? 24 * 3600_000);
    if (stale) {
      await breakStaleLock(file, held.info);
      continue;
    }
    if (Date.now() >= deadline) {
      const h = held.info;
      throw new AgentVaultError(
        'locked',
        h ? `the vault ${vaultDir} is locked by "${h.command}" (pid ${h.pid} on ${h.host}, since ${h.started_at}); not starting a second run` : `the vault ${vaultDir} is locked (${file}); not starting a second run`,
        { location: { file }, exitCode: 1, hint: h && h.host === os.hostname() ? 'wait for it to finish (--wait <seconds>)' : `if no run is active, remove ${file}` },
      );
    }
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

function makeLock(file: string, info: LockInfo): VaultLock {
  let released = false;
  const ours = (text: string): boolean => {
    try {
      return (JSON.parse(text) as LockInfo).token === info.token;
    } catch {
      return false;
    }
  };
  return {
    info,
    path: file,
    async release() {
      if (released) return;
      released = true;
      try {
        if (ours(await fsp.readFile(file, 'utf8'))) await fsp.rm(file, { force: true });
      } catch {
        /* gone already */
      }
    },
    releaseSync() {
      if (released) return;
      released = true;
      try {
        if (ours(readFileSync(file, 'utf8'))) unlinkSync(file);
      } catch {
        /* gone already */
      }
    },
  };
}

/** Who holds the lock now (null when free or stale). */
export async function lockHolder(vaultDir: string): Promise<LockInfo | null> {
  const held = await readLockInfo(path.join(vaultDir, LOCK_FILE));
  if (!held?.info) return null;
  return staleReason(held, 24 * 3600_000) ? null : held.info;
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

// ---------------------------------------------------------------------------------------------
// leftovers

/**
 * Removes what interrupted runs left behind: temp files (`*.tmp-*`, `.tmp/`) and complete
 * archives that the index does not list. Call only while holding the lock.
 */
export async function removeLeftovers(vaultDir: string, index: VaultIndex): Promise<string[]> {
  const removed: string[] = [];
  const listed = new Set(index.snapshots.map((s) => path.resolve(snapshotPath(vaultDir, s))));
  const snapDir = path.join(vaultDir, SNAPSHOTS_DIR);
  let names: string[] = [];
  try {
    names = await fsp.readdir(snapDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(e, snapDir, 'read');
  }
  for (const n of names) {
    const p = path.join(snapDir, n);
    if (listed.has(path.resolve(p))) continue;
    if (/\.tmp-[0-9a-f]+$/.test(n) || n.endsWith(SNAPSHOT_EXT)) {
      await fsp.rm(p, { force: true, recursive: true });
      removed.push(path.relative(vaultDir, p));
    }
  }
  const tmp = path.join(vaultDir, TMP_DIR);
  if (await exists(tmp)) {
    for (const n of await fsp.readdir(tmp)) {
      await fsp.rm(path.join(tmp, n), { force: true, recursive: true });
      removed.push(`${TMP_DIR}/${n}`);
    }
  }
  for (const n of await fsp.readdir(vaultDir).catch(() => [] as string[])) {
    if (/^\.?vault\.json\.tmp-[0-9a-f]+$/.test(n) || /^\.lock\.stale-/.test(n)) {
      await fsp.rm(path.join(vaultDir, n), { force: true });
      removed.push(n);
    }
  }
  return removed;
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
