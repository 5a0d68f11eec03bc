/**
 * The exclusive lock of a vault in object storage: a `.lock` object created with a conditional
 * write (`If-None-Match: *`), so of two runs that start together exactly one gets it.
 *
 * Staleness (the same rules as the local lock, docs/VAULT.md): the holder records host, pid, the
 * process's start time (Linux /proc/<pid>/stat field 22, so a reused pid is not mistaken for the
 * holder) and rewrites `heartbeat_at` every `heartbeatMs`. A lock is stale when its holder is on
 * this host and that process is gone (or is another process with the same pid), or when its
 * heartbeat is older than `staleMs` (any host). Breaking a stale lock deletes it and takes it
 * anew with a conditional write; after taking a lock the run reads it back once more after
 * `settleMs`, so two runs that broke the same stale lock at once do not both go on.
 *
 * Where a server has no conditional writes the lock cannot be taken safely: `acquire` fails with
 * `s3-no-conditional-put` (docs/VAULT.md says what to do).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { AgentVaultError } from '../../core/errors';
import type { ObjectStore } from './store';

export const REMOTE_LOCK_KEY = '.lock';

export interface RemoteLockInfo {
  host: string;
  pid: number;
  /** The holder's process start time in clock ticks since boot (Linux), null elsewhere. */
  pid_start: number | null;
  command: string;
  token: string;
  started_at: string;
  heartbeat_at: string;
}

export interface RemoteLockOptions {
  command: string;
  /** A lock whose heartbeat is older than this is stale (default 15 min). */
  staleMs?: number;
  /** How often the holder rewrites its heartbeat (default 60 s). */
  heartbeatMs?: number;
  /** How long to wait for another run to finish (default 0: refuse at once). */
  waitMs?: number;
  pollMs?: number;
  /** Pause before the read-back check after taking a lock (default 1 s). */
  settleMs?: number;
}

export interface RemoteLock {
  readonly info: RemoteLockInfo;
  release(): Promise<void>;
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or null. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may contain spaces: split after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[22 - 3]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function holderGone(info: RemoteLockInfo): boolean {
  if (info.host !== os.hostname()) return false;
  const now = processStartTicks(info.pid);
  if (now === null) {
    try {
      process.kill(info.pid, 0);
      return false;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code !== 'EPERM';
    }
  }
  return info.pid_start !== null && now !== info.pid_start;
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
export function remoteStaleReason(held: RemoteLockInfo | null, lastModified: Date | undefined, staleMs: number, now = Date.now()): string | null {
  if (!held) {
    const age = lastModified ? now - lastModified.getTime() : Infinity;
    return age > staleMs ? 'its lock object is unreadable and old' : null;
  }
  if (holderGone(held)) return `process ${held.pid} on this host is gone`;
  const beat = Date.parse(held.heartbeat_at);
  if (!Number.isFinite(beat) || now - beat > staleMs) return `its last heartbeat (${held.heartbeat_at}, ${held.host}) is older than ${Math.round(staleMs / 60000)} min`;
  return null;
}

/** Who holds the lock now (null when free or stale). */
export async function remoteLockHolder(store: ObjectStore, staleMs = 15 * 60_000): Promise<RemoteLockInfo | null> {
  const head = await store.head(REMOTE_LOCK_KEY);
  if (!head) return null;
  const info = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
  return remoteStaleReason(info, head.lastModified, staleMs) ? null : info;
}

export async function acquireRemoteLock(store: ObjectStore, opts: RemoteLockOptions): Promise<RemoteLock> {
  const staleMs = opts.staleMs ?? 15 * 60_000;
  const heartbeatMs = opts.heartbeatMs ?? 60_000;
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const startedAt = new Date().toISOString();
  const info: RemoteLockInfo = {
    host: os.hostname(),
    pid: process.pid,
    pid_start: processStartTicks(process.pid),
    command: opts.command,
    token: randomBytes(8).toString('hex'),
    started_at: startedAt,
    heartbeat_at: startedAt,
  };
  const body = (): string => JSON.stringify(info) + '\n';
  for (;;) {
    if (await store.writeBytes(REMOTE_LOCK_KEY, body(), { ifAbsent: true })) {
      await new Promise((r) => setTimeout(r, opts.settleMs ?? 1000));
      const back = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
      if (back?.token === info.token) break;
      // another run broke "our" lock as stale in the same instant: it goes on, we wait
      continue;
    }
    const head = await store.head(REMOTE_LOCK_KEY);
    const held = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
    if (head && remoteStaleReason(held, head.lastModified, staleMs)) {
      // read once more: break only the very lock that was judged stale
      const again = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
      if ((again?.token ?? null) === (held?.token ?? null)) await store.delete(REMOTE_LOCK_KEY);
      continue;
    }
    if (!head) continue; // released meanwhile
    if (Date.now() >= deadline) {
      throw new AgentVaultError(
        'locked',
        held
          ? `the vault ${store.location} is locked by "${held.command}" (pid ${held.pid} on ${held.host}, since ${held.started_at}, last heartbeat ${held.heartbeat_at}); not starting a second run`
          : `the vault ${store.location} is locked (${REMOTE_LOCK_KEY}); not starting a second run`,
        { hint: 'wait for it to finish (--wait <seconds>); a lock without a heartbeat for 15 minutes is broken automatically' },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 1000, Math.max(1, deadline - Date.now()))));
  }
  let released = false;
  const beat = setInterval(() => {
    void (async () => {
      const cur = parseInfo(await store.readBytes(REMOTE_LOCK_KEY));
      if (released || cur?.token !== info.token) return;
      info.heartbeat_at = new Date().toISOString();
      await store.writeBytes(REMOTE_LOCK_KEY, body());
    })().catch(() => undefined);
  }, heartbeatMs);
  beat.unref();
  return {
    info,
    async release() {
      if (released) return;
      released = true;
      clearInterval(beat);
      const cur = parseInfo(await store.readBytes(REMOTE_LOCK_KEY).catch(() => null));
      if (cur?.token === info.token) await store.delete(REMOTE_LOCK_KEY);
    },
  };
}
