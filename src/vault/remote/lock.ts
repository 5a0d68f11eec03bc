/**
 * The exclusive lock of a vault in object storage: a `.lock` object created with a conditional
 * write (`If-None-Match: *`), so of two runs that start together exactly one gets it.
 *
 * The lock record and the staleness rule are the local lock's (../vault.ts: host, pid, process
 * start time, boot id; `staleReason`): a lock is stale when its holder on this host is gone or
 * its pid now belongs to another process, or when its heartbeat is older than the stale time.
 * An object's mtime cannot be touched, so the holder rewrites the object with a new
 * `heartbeat_at` every `heartbeatMs`. Breaking a stale lock deletes exactly the lock that was
 * judged stale and takes it anew with a conditional write; after taking a lock the run reads it
 * back once more after `settleMs`, so two runs that broke the same stale lock at once do not
 * both go on.
 *
 * Where a server has no conditional writes (it answers 501) the lock cannot be taken safely:
 * `acquire` fails with `s3-no-conditional-put` (docs/VAULT.md says what to do). A server that
 * silently ignores `If-None-Match` is covered as far as it can be: the lock object is looked for
 * before it is written (a live lock is never overwritten), and the read-back after `settleMs`
 * lets only one of two runs that wrote in the same instant go on.
 */
import { AgentVaultError } from '../../core/errors';
import { FOREIGN_LOCK_STALE_MS, LOCK_HEARTBEAT_MS, newLockInfo, staleReason, type LockInfo } from '../vault';
import type { ObjectStore } from './store';

export const REMOTE_LOCK_KEY = '.lock';

export interface RemoteLockInfo extends LockInfo {
  /** The holder's last sign of life (rewritten every heartbeat). */
  heartbeat_at: string;
  /** The exclusive holder may delete objects (a prune): readers wait for it or refuse. */
  deletes?: boolean;
}

export interface RemoteLockOptions {
  command: string;
  /** A lock whose heartbeat is older than this is stale (default: the local lock's, 10 min). */
  staleMs?: number;
  /** How often the holder rewrites its heartbeat (default: the local lock's, 30 s). */
  heartbeatMs?: number;
  /** How long to wait for another run to finish (default 0: refuse at once). */
  waitMs?: number;
  pollMs?: number;
  /** Pause before the read-back check after taking a lock (default 1 s). */
  settleMs?: number;
  /** The run may delete objects (prune, a backup that prunes after): readers keep out of its way. */
  deletes?: boolean;
}

export interface RemoteLock {
  readonly info: RemoteLockInfo;
  release(): Promise<void>;
}

function parseInfo(b: Buffer | null): RemoteLockInfo | null {
  if (!b) return null;
  try {
    const v = JSON.parse(b.toString('utf8')) as RemoteLockInfo;
    return v && typeof v.token === 'string' && typeof v.pid === 'number' && typeof v.heartbeat_at === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** Why the lock `held` is stale, or null while its holder may still be running. */
export function remoteStaleReason(held: RemoteLockInfo | null, lastModified: Date | undefined, staleMs: number): string | null {
  const beat = held ? Date.parse(held.heartbeat_at) : (lastModified?.getTime() ?? 0);
  return staleReason({ info: held, mtimeMs: Number.isFinite(beat) ? beat : 0 }, staleMs);
}

/** Who holds the lock now (null when free or stale). */
export async function remoteLockHolder(store: ObjectStore, staleMs = FOREIGN_LOCK_STALE_MS): Promise<RemoteLockInfo | null> {
  const head = await store.head(REMOTE_LOCK_KEY);
  if (!head) return null;
  const info = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
  return remoteStaleReason(info, head.lastModified, staleMs) ? null : info;
}

export async function acquireRemoteLock(store: ObjectStore, opts: RemoteLockOptions): Promise<RemoteLock> {
  const staleMs = opts.staleMs ?? FOREIGN_LOCK_STALE_MS;
  const heartbeatMs = opts.heartbeatMs ?? LOCK_HEARTBEAT_MS;
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const base = newLockInfo(opts.command, 'exclusive');
  const info: RemoteLockInfo = { ...base, heartbeat_at: base.started_at, ...(opts.deletes ? { deletes: true } : {}) };
  const body = (): string => JSON.stringify(info) + '\n';
  for (;;) {
    // look first, write only where no lock is: a server that ignores If-None-Match then still
    // never has a live lock overwritten (only a write in the same instant; the read-back settles that)
    const head = await store.head(REMOTE_LOCK_KEY);
    if (!head) {
      if (await store.writeBytes(REMOTE_LOCK_KEY, body(), { ifAbsent: true })) {
        await new Promise((r) => setTimeout(r, opts.settleMs ?? 1000));
        const back = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
        if (back?.token === info.token) break;
        // another run took or broke the lock in the same instant: it goes on, we wait
      }
      continue;
    }
    const held = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
    if (remoteStaleReason(held, head.lastModified, staleMs)) {
      // read once more: break only the very lock that was judged stale
      const again = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
      if ((again?.token ?? null) === (held?.token ?? null)) await store.delete(REMOTE_LOCK_KEY);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new AgentVaultError(
        'locked',
        held
          ? `the vault ${store.location} is locked by "${held.command}" (pid ${held.pid} on ${held.host}, since ${held.started_at}, last heartbeat ${held.heartbeat_at}); not starting a second run`
          : `the vault ${store.location} is locked (${REMOTE_LOCK_KEY}); not starting a second run`,
        { kind: 'locked', remedy: 'wait', hint: `a lock without a heartbeat for ${Math.round(staleMs / 60000)} minutes is broken automatically` },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 1000, Math.max(1, deadline - Date.now()))));
  }
  return heldLock(
    info,
    heartbeatMs,
    async (released) => {
      const cur = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
      if (released() || cur?.token !== info.token) return;
      info.heartbeat_at = new Date().toISOString();
      await store.writeBytes(REMOTE_LOCK_KEY, body());
    },
    async () => {
      const cur = parseInfo(await store.readBytes(REMOTE_LOCK_KEY).catch(() => null));
      if (cur?.token === info.token) await store.delete(REMOTE_LOCK_KEY);
    },
  );
}

/**
 * A lock this process holds: `beat` rewrites its heartbeat every `heartbeatMs` (errors are left
 * to the next beat; `released()` says whether the lock was let go meanwhile) until `release()`,
 * which stops the beats and runs `drop` once.
 */
function heldLock(info: RemoteLockInfo, heartbeatMs: number, beat: (released: () => boolean) => Promise<void>, drop: () => Promise<void>): RemoteLock {
  let released = false;
  const timer = setInterval(() => {
    if (!released) void beat(() => released).catch(() => undefined);
  }, heartbeatMs);
  timer.unref();
  return {
    info,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await drop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// readers

/**
 * Shared reader locks of a vault in object storage: one object per reader under `.readers/`
 * (`<token>.json`, the lock record of ../vault.ts with `mode: "shared"` and a `heartbeat_at` the
 * holder rewrites every `heartbeatMs`), so a prune does not delete chunks a reader is streaming.
 *
 * The rule, both sides in this order (S3 reads its own writes and lists them, so one side always
 * sees the other):
 * - a reader writes its object, then looks at `.lock`: while a live lock that may delete
 *   (`deletes: true`: a prune, or a backup that prunes after) is there, it takes its object
 *   away again and waits (up to `waitMs`) or refuses (error 'locked');
 * - a prune holds `.lock` (with `deletes`), then lists `.readers/`: while a live reader is there it
 *   waits (up to its `waitMs`) or refuses, before it deletes anything.
 * A reader object is stale by the exclusive lock's rule (remoteStaleReason: its holder on this
 * host is gone, or no heartbeat for the stale time); stale ones are ignored and removed.
 */
export const REMOTE_READERS_PREFIX = '.readers/';

const READER_KEY = /^\.readers\/[0-9a-f]{16}\.json$/;

function describeHolder(h: RemoteLockInfo): string {
  return `"${h.command}" (pid ${h.pid} on ${h.host}, since ${h.started_at}, last heartbeat ${h.heartbeat_at})`;
}

/** Takes a shared reader lock (see above); waits up to `waitMs` for a running prune, else error 'locked'. */
export async function acquireRemoteReaderLock(store: ObjectStore, opts: RemoteLockOptions): Promise<RemoteLock> {
  const staleMs = opts.staleMs ?? FOREIGN_LOCK_STALE_MS;
  const heartbeatMs = opts.heartbeatMs ?? LOCK_HEARTBEAT_MS;
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const base = newLockInfo(opts.command, 'shared');
  const info: RemoteLockInfo = { ...base, heartbeat_at: base.started_at };
  const key = `${REMOTE_READERS_PREFIX}${info.token}.json`;
  const body = (): string => JSON.stringify(info) + '\n';
  for (;;) {
    info.heartbeat_at = new Date().toISOString();
    await store.writeBytes(key, body());
    const held = await remoteLockHolder(store, staleMs);
    if (!held?.deletes) break;
    await store.delete(key).catch(() => undefined);
    if (Date.now() >= deadline) {
      throw new AgentVaultError('locked', `the vault ${store.location} is locked by ${describeHolder(held)}, which deletes what it no longer needs; not reading it meanwhile`, {
        kind: 'locked',
        remedy: 'wait',
        hint: `wait for it (--wait <seconds>); a lock without a heartbeat for ${Math.round(staleMs / 60000)} minutes is broken automatically`,
      });
    }
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 1000, Math.max(1, deadline - Date.now()))));
  }
  return heldLock(
    info,
    heartbeatMs,
    async (released) => {
      if (released()) return;
      info.heartbeat_at = new Date().toISOString();
      await store.writeBytes(key, body());
    },
    () => store.delete(key).catch(() => undefined),
  );
}

/** The live reader locks of the vault; stale ones are removed (each only as it was judged stale). */
export async function liveRemoteReaders(store: ObjectStore, staleMs = FOREIGN_LOCK_STALE_MS): Promise<RemoteLockInfo[]> {
  const live: RemoteLockInfo[] = [];
  for await (const o of store.list(REMOTE_READERS_PREFIX)) {
    if (!READER_KEY.test(o.key)) continue; // not a reader lock of ours: left alone
    const held = parseInfo(await store.readBytes(o.key));
    if (!held && !(await store.head(o.key))) continue; // released meanwhile
    if (remoteStaleReason(held, o.lastModified, staleMs)) {
      const again = parseInfo(await store.readBytes(o.key));
      if (again?.heartbeat_at === held?.heartbeat_at) await store.delete(o.key).catch(() => undefined);
      continue;
    }
    if (held) live.push(held);
  }
  return live;
}

/**
 * Before a prune deletes anything (it holds `.lock` with `deletes`): waits up to `waitMs` for the
 * vault's live readers to finish, else error 'locked' naming them.
 */
export async function waitForRemoteReaders(store: ObjectStore, opts: { command: string; waitMs?: number; pollMs?: number; staleMs?: number }): Promise<void> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    const live = await liveRemoteReaders(store, opts.staleMs);
    if (!live.length) return;
    if (Date.now() >= deadline) {
      throw new AgentVaultError(
        'locked',
        `the vault ${store.location} is being read by ${live.map(describeHolder).join(', ')}; "${opts.command}" does not delete chunks a reader may need, nothing was deleted`,
        {
          kind: 'locked',
          remedy: 'wait',
          hint: `wait for the reader(s) (--wait <seconds>); a reader lock without a heartbeat for ${Math.round((opts.staleMs ?? FOREIGN_LOCK_STALE_MS) / 60000)} minutes is stale and ignored`,
        },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 1000, Math.max(1, deadline - Date.now()))));
  }
}
