/**
 * `agent-vault prune`: applies the retention policy (./retention.ts) to a vault. Holds the vault's
 * exclusive lock (so it waits for, or refuses during, a running drill or verify, which hold shared
 * locks). First, archives the index does not list are verified and listed again (or reported);
 * then every listed snapshot gets a quick verification (./reconcile.ts): only snapshots that pass
 * are counted by the retention rules, so a damaged newest snapshot never displaces a good one; a
 * snapshot that fails is reported and kept. The removed snapshots leave the index first
 * (atomically) and their files are deleted after — only files the index listed, which this run
 * just dropped from it.
 */
import { promises as fsp } from 'node:fs';
import { errorMessage } from '../core/errors';
import { planRetention, type RetentionPlan, type RetentionPolicy } from './retention';
import { adoptUnlisted, quickVerify } from './reconcile';
import { appendRunLog, newRunId, runLogRecord, readIndex, snapshotPath, sweepTempFiles, withLock, writeIndex, type SnapshotRecord } from './vault';

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
  /** Files that could not be deleted (they are no longer listed; `rebuild-index` lists them again if they are intact). */
  deleteErrors: string[];
  /** Listed snapshots that failed the quick verification: kept, and not counted by the rules. */
  unverified: Array<{ id: string; file: string; reason: string }>;
  /** Unlisted archives that verified and were listed again before the plan was made. */
  adopted: string[];
  /** Unlisted archives that failed verification (left in place). */
  rejected: Array<{ file: string; reason: string }>;
  /** Temp files of interrupted runs that were removed. */
  swept: string[];
}

/**
 * The retention plan over the snapshots that pass `verify` (a quick check: file present with the
 * recorded size and SHA-256…); one that fails is kept, reported, and not counted by the rules, so
 * a damaged snapshot never makes a good one go. Shared by folder and object-storage vaults.
 */
export async function planPrune(
  snapshots: readonly SnapshotRecord[],
  policy: RetentionPolicy,
  verify: (s: SnapshotRecord) => Promise<string | null>,
): Promise<{ plan: RetentionPlan; removed: SnapshotRecord[]; kept: SnapshotRecord[]; unverified: Array<{ id: string; file: string; reason: string }> }> {
  const unverified: Array<{ id: string; file: string; reason: string }> = [];
  const good: SnapshotRecord[] = [];
  for (const s of snapshots) {
    const why = await verify(s);
    if (why) unverified.push({ id: s.id, file: s.file, reason: why });
    else good.push(s);
  }
  const plan = planRetention(
    good.map((s) => ({ id: s.id, created_at: s.created_at, agents: s.agents.map((a) => a.id), collections: s.collections })),
    policy,
  );
  const removeIds = new Set(plan.remove.map((d) => d.id));
  return { plan, removed: snapshots.filter((s) => removeIds.has(s.id)), kept: snapshots.filter((s) => !removeIds.has(s.id)), unverified };
}

async function pruneLocked(vaultDir: string, opts: PruneOptions): Promise<PruneResult> {
  const index = await readIndex(vaultDir);
  const swept = opts.dryRun ? [] : await sweepTempFiles(vaultDir);
  const adoption = await adoptUnlisted(vaultDir, index);
  if (adoption.adopted.length && !opts.dryRun) await writeIndex(vaultDir, index);
  const { plan, removed, kept, unverified } = await planPrune(index.snapshots, opts.policy, (s) => quickVerify(vaultDir, s));
  const result: PruneResult = {
    dryRun: !!opts.dryRun,
    plan,
    removed,
    kept,
    freedBytes: removed.reduce((n, s) => n + s.bytes, 0),
    deleteErrors: [],
    unverified,
    adopted: adoption.adopted.map((s) => s.id),
    rejected: adoption.rejected,
    swept,
  };
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
      await appendRunLog(
        vaultDir,
        runLogRecord('prune', started, true, { removed: r.removed.map((s) => s.id), kept: r.kept.length, unverified: r.unverified.map((u) => u.id), adopted: r.adopted }, runId),
      ).catch(() => undefined);
    }
    return r;
  } catch (e) {
    if (!opts.noRunLog && !opts.dryRun) {
      await appendRunLog(vaultDir, runLogRecord('prune', started, false, { error: { code: (e as { code?: string }).code ?? 'error', message: errorMessage(e) } }, runId)).catch(() => undefined);
    }
    throw e;
  }
}
