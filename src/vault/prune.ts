/**
 * `agent-vault prune`: applies the retention policy (./retention.ts) to a vault. Holds the vault
 * lock; drops the removed snapshots from the index first (atomically) and deletes their files
 * after, so an interrupted prune leaves at most unlisted files that the next run removes.
 */
import { promises as fsp } from 'node:fs';
import { errorMessage } from '../core/errors';
import { planRetention, type RetentionPlan, type RetentionPolicy } from './retention';
import { appendRunLog, newRunId, readIndex, snapshotPath, withLock, writeIndex, type SnapshotRecord } from './vault';
import * as os from 'node:os';

export interface PruneOptions {
  policy: RetentionPolicy;
  dryRun?: boolean;
  /** Wait this long for a running backup (default 0: refuse). */
  waitMs?: number;
  /** Don't append to the run log (e.g. prune as part of a backup run, which logs itself). */
  noRunLog?: boolean;
  /** Already holding the lock (called from inside a backup). */
  locked?: boolean;
}

export interface PruneResult {
  dryRun: boolean;
  plan: RetentionPlan;
  removed: SnapshotRecord[];
  kept: SnapshotRecord[];
  freedBytes: number;
  /** Files that could not be deleted (they are no longer listed; the next run retries). */
  deleteErrors: string[];
}

async function pruneLocked(vaultDir: string, opts: PruneOptions): Promise<PruneResult> {
  const index = await readIndex(vaultDir);
  const plan = planRetention(
    index.snapshots.map((s) => ({ id: s.id, created_at: s.created_at, agents: s.agents.map((a) => a.id), collections: s.collections })),
    opts.policy,
  );
  const removeIds = new Set(plan.remove.map((d) => d.id));
  const removed = index.snapshots.filter((s) => removeIds.has(s.id));
  const kept = index.snapshots.filter((s) => !removeIds.has(s.id));
  const result: PruneResult = { dryRun: !!opts.dryRun, plan, removed, kept, freedBytes: removed.reduce((n, s) => n + s.bytes, 0), deleteErrors: [] };
  if (opts.dryRun || removed.length === 0) return result;
  index.snapshots = kept;
  await writeIndex(vaultDir, index);
  for (const s of removed) {
    try {
      await fsp.rm(snapshotPath(vaultDir, s), { force: true });
    } catch (e) {
      result.deleteErrors.push(`${s.file}: ${errorMessage(e)}`);
    }
  }
  return result;
}

export async function pruneVault(vaultDir: string, opts: PruneOptions): Promise<PruneResult> {
  if (opts.locked) return pruneLocked(vaultDir, opts);
  await readIndex(vaultDir); // "not a vault" before any lock file is created
  const started = new Date();
  const runId = newRunId();
  try {
    const r = await withLock(vaultDir, { command: opts.dryRun ? 'prune --dry-run' : 'prune', waitMs: opts.waitMs }, () => pruneLocked(vaultDir, opts));
    if (!opts.noRunLog && !opts.dryRun) {
      await appendRunLog(vaultDir, {
        run_id: runId,
        command: 'prune',
        started_at: started.toISOString(),
        finished_at: new Date().toISOString(),
        duration_ms: Date.now() - started.getTime(),
        ok: true,
        host: os.hostname(),
        pid: process.pid,
        removed: r.removed.map((s) => s.id),
        kept: r.kept.length,
      }).catch(() => undefined);
    }
    return r;
  } catch (e) {
    if (!opts.noRunLog && !opts.dryRun) {
      await appendRunLog(vaultDir, {
        run_id: runId,
        command: 'prune',
        started_at: started.toISOString(),
        finished_at: new Date().toISOString(),
        duration_ms: Date.now() - started.getTime(),
        ok: false,
        host: os.hostname(),
        pid: process.pid,
        error: { code: (e as { code?: string }).code ?? 'error', message: errorMessage(e) },
      }).catch(() => undefined);
    }
    throw e;
  }
}
