/**
 * `agent-vault status` and `vaultStatus()` (also used by the VS Code side panel): per agent, the
 * age of its newest snapshot against the policy and its latest drill result.
 *
 * Levels: 'error' — the latest drill covering the agent failed; 'warning' — the newest snapshot is
 * older than `maxAgeHours`, or there is no passing drill within `drillMaxAgeDays`; 'ok' otherwise.
 */
import type { StatusPolicy } from './config';
import { readDrillReports, type DrillCheckName, type DrillReport } from './drill-report';
import { promises as fsp } from 'node:fs';
import { lockHolders, readIndex, readRunLog, snapshotPath, unlistedFiles, type LockInfo, type RunLogRecord, type SnapshotRecord, type VaultIndex } from './vault';

export const DEFAULT_MAX_AGE_HOURS = 26;
export const DEFAULT_DRILL_MAX_AGE_DAYS = 7;

export type StatusLevel = 'ok' | 'warning' | 'error';

export interface AgentDrillStatus {
  snapshot: string | null;
  at: string;
  ok: boolean;
  failed_checks: DrillCheckName[];
  rto_ms: number | null;
  first_vector_search_ms: number | null;
  age_days: number;
  report: string | null;
}

export interface AgentStatus {
  id: string;
  name: string | null;
  snapshots: number;
  last_snapshot: { id: string; created_at: string; age_hours: number; encrypted: boolean } | null;
  /** The newest snapshot is older than the policy allows. */
  stale: boolean;
  last_drill: AgentDrillStatus | null;
  /** The newest passing drill (may be older than last_drill). */
  last_passing_drill_at: string | null;
  drill_failed: boolean;
  /** No passing drill within drillMaxAgeDays. */
  drill_overdue: boolean;
  level: StatusLevel;
  warnings: string[];
}

export interface VaultStatus {
  vault: string;
  generated_at: string;
  policy: Required<StatusPolicy>;
  snapshots: number;
  bytes: number;
  newest_snapshot: { id: string; created_at: string } | null;
  last_backup_run: Pick<RunLogRecord, 'started_at' | 'finished_at' | 'ok' | 'snapshot' | 'error'> | null;
  /** The holder of the exclusive lock (backup, prune, rebuild-index), if one runs. */
  running: LockInfo | null;
  /** Holders of shared locks (drills, verifies) running now. */
  readers: LockInfo[];
  /** Lock files left by processes that are gone (the next run breaks them). */
  stale_locks: Array<{ file: string; holder: LockInfo | null; reason: string }>;
  /** Listed snapshots whose archive file is missing (not counted for the agents). */
  missing: Array<{ id: string; file: string }>;
  /** Archives in snapshots/ that the index does not list. */
  unlisted: string[];
  /** Listed snapshots whose stored object fails the quick check (a vault in object storage: size and recorded SHA-256). */
  damaged?: Array<{ id: string; file: string; reason: string }>;
  agents: AgentStatus[];
  level: StatusLevel;
  warnings: string[];
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

function worst(a: StatusLevel, b: StatusLevel): StatusLevel {
  const rank = { ok: 0, warning: 1, error: 2 };
  return rank[a] >= rank[b] ? a : b;
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/**
 * The status of every agent that has a snapshot in the vault. Reads the index, the drill
 * reports, the run log and the lock files, and checks that every listed archive file exists (no
 * archive is opened).
 */
export interface VaultStatusOptions {
  now?: Date;
  /** Whether a listed snapshot's archive is there (default: the file exists in the folder); a remote vault answers from a listing. */
  present?: (rec: SnapshotRecord) => boolean;
  /** The vault as named in the report (default: the folder). */
  label?: string;
  /** The snapshots (default: the folder's vault.json); a store vault answers from its store. */
  index?: VaultIndex;
}

export async function vaultStatus(vaultDir: string, policy: StatusPolicy = {}, opts: VaultStatusOptions = {}): Promise<VaultStatus> {
  const now = (opts.now ?? new Date()).getTime();
  const pol: Required<StatusPolicy> = {
    maxAgeHours: policy.maxAgeHours ?? DEFAULT_MAX_AGE_HOURS,
    drillMaxAgeDays: policy.drillMaxAgeDays ?? DEFAULT_DRILL_MAX_AGE_DAYS,
  };
  const index = opts.index ?? (await readIndex(vaultDir));
  const [reports, runs, locks, files] = await Promise.all([readDrillReports(vaultDir), readRunLog(vaultDir, { last: 200 }), lockHolders(vaultDir), unlistedFiles(vaultDir, index)]);
  const running = locks.exclusive;
  const snapsById = new Map(index.snapshots.map((s) => [s.id, s]));
  const missing: Array<{ id: string; file: string }> = [];
  const present: SnapshotRecord[] = [];
  for (const s of index.snapshots) {
    if (
      opts.present
        ? opts.present(s)
        : await fsp.stat(snapshotPath(vaultDir, s)).then(
            (st) => st.isFile(),
            () => false,
          )
    )
      present.push(s);
    else missing.push({ id: s.id, file: s.file });
  }

  const agents = new Map<string, { name: string | null; snaps: SnapshotRecord[]; drills: DrillReport[] }>();
  const entry = (id: string, name: string | null) => {
    let e = agents.get(id);
    if (!e) agents.set(id, (e = { name, snaps: [], drills: [] }));
    if (name) e.name = name;
    return e;
  };
  for (const s of present) for (const a of s.agents) entry(a.id, a.name).snaps.push(s);
  for (const s of missing) for (const a of snapsById.get(s.id)!.agents) entry(a.id, a.name);
  for (const r of reports) {
    const ids = r.agents.length ? r.agents.map((a) => a.id) : ((r.snapshot.id ? snapsById.get(r.snapshot.id)?.agents.map((a) => a.id) : undefined) ?? []);
    for (const id of ids) if (agents.has(id)) agents.get(id)!.drills.push(r);
  }

  const out: AgentStatus[] = [];
  for (const [id, a] of agents) {
    const snaps = [...a.snaps].sort((x, y) => (x.created_at < y.created_at ? 1 : -1));
    const newest = snaps[0];
    const warnings: string[] = [];
    let level: StatusLevel = 'ok';
    const ageH = newest ? (now - Date.parse(newest.created_at)) / HOUR : Infinity;
    const stale = ageH > pol.maxAgeHours;
    if (!newest) {
      level = worst(level, 'error');
      warnings.push('no snapshot archive of this agent is present (every listed file is missing)');
    } else if (stale) {
      level = worst(level, 'warning');
      warnings.push(`newest snapshot is ${round(ageH)} h old (policy: ${pol.maxAgeHours} h)`);
    }
    const drills = a.drills;
    const last = drills[drills.length - 1];
    const lastPassing = [...drills].reverse().find((d) => d.ok);
    const drillFailed = !!last && !last.ok;
    if (drillFailed) {
      level = worst(level, 'error');
      warnings.push(`latest drill failed${last.failed_checks.length ? ` (${last.failed_checks.join(', ')})` : last.error ? ` (${last.error.message})` : ''}`);
    }
    const passingAge = lastPassing ? (now - Date.parse(lastPassing.started_at)) / DAY : Infinity;
    const overdue = passingAge > pol.drillMaxAgeDays;
    if (overdue && !drillFailed) {
      level = worst(level, 'warning');
      warnings.push(lastPassing ? `last passing drill is ${round(passingAge)} days old (policy: ${pol.drillMaxAgeDays} days)` : 'never drilled');
    }
    out.push({
      id,
      name: a.name,
      snapshots: snaps.length,
      last_snapshot: newest ? { id: newest.id, created_at: newest.created_at, age_hours: round(ageH, 2), encrypted: newest.encrypted } : null,
      stale,
      last_drill: last
        ? {
            snapshot: last.snapshot.id,
            at: last.started_at,
            ok: last.ok,
            failed_checks: last.failed_checks,
            rto_ms: last.timings.rto_ms,
            first_vector_search_ms: last.timings.first_vector_search_ms,
            age_days: round((now - Date.parse(last.started_at)) / DAY, 2),
            report: last.files?.json ?? null,
          }
        : null,
      last_passing_drill_at: lastPassing?.started_at ?? null,
      drill_failed: drillFailed,
      drill_overdue: overdue,
      level,
      warnings,
    });
  }
  out.sort((x, y) => ((x.name ?? x.id) < (y.name ?? y.id) ? -1 : (x.name ?? x.id) > (y.name ?? y.id) ? 1 : 0));

  const backups = runs.filter((r) => r.command === 'backup');
  const lastBackup = backups[backups.length - 1];
  const vaultWarnings: string[] = [];
  let level: StatusLevel = out.reduce<StatusLevel>((l, a) => worst(l, a.level), 'ok');
  if (lastBackup && !lastBackup.ok) {
    level = worst(level, 'warning');
    vaultWarnings.push(`last backup run ${lastBackup.interrupted ? 'was interrupted' : 'failed'} at ${lastBackup.finished_at}: ${lastBackup.error?.message ?? 'unknown error'}`);
  }
  if (missing.length) {
    level = worst(level, 'error');
    vaultWarnings.push(
      `${missing.length} listed snapshot(s) have no archive file: ${missing.map((m) => m.file).join(', ')}; run "agent-vault rebuild-index" to bring the index in line with the archives`,
    );
  }
  if (files.archives.length) {
    level = worst(level, 'warning');
    vaultWarnings.push(`${files.archives.length} archive(s) in snapshots/ are not in the index: ${files.archives.join(', ')}; the next backup or "agent-vault rebuild-index" verifies and lists them`);
  }
  for (const st of locks.stale)
    vaultWarnings.push(`stale lock ${st.file}${st.holder ? ` of "${st.holder.command}" (pid ${st.holder.pid} on ${st.holder.host})` : ''}: ${st.reason}; the next run breaks it`);
  if (index.snapshots.length === 0) {
    level = worst(level, 'warning');
    vaultWarnings.push('the vault has no snapshots');
  }
  const newestSnap = [...present].sort((x, y) => (x.created_at < y.created_at ? 1 : -1))[0];
  return {
    vault: opts.label ?? vaultDir,
    generated_at: new Date(now).toISOString(),
    policy: pol,
    snapshots: index.snapshots.length,
    bytes: index.snapshots.reduce((n, s) => n + (s.bytes ?? 0), 0),
    newest_snapshot: newestSnap ? { id: newestSnap.id, created_at: newestSnap.created_at } : null,
    last_backup_run: lastBackup
      ? { started_at: lastBackup.started_at, finished_at: lastBackup.finished_at, ok: lastBackup.ok, snapshot: lastBackup.snapshot ?? null, error: lastBackup.error ?? null }
      : null,
    running,
    readers: locks.shared,
    stale_locks: locks.stale,
    missing,
    unlisted: files.archives,
    agents: out,
    level,
    warnings: vaultWarnings,
  };
}

function ageText(hours: number): string {
  if (hours < 1) return `${Math.round(hours * 60)} min`;
  if (hours < 48) return `${round(hours)} h`;
  return `${round(hours / 24)} d`;
}

/** The table `agent-vault status` prints. */
export function renderStatus(s: VaultStatus): string {
  const lines: string[] = [];
  lines.push(
    `vault ${s.vault}: ${s.snapshots} snapshot(s), ${(s.bytes / 1048576).toFixed(1)} MiB; policy: backup within ${s.policy.maxAgeHours} h, passing drill within ${s.policy.drillMaxAgeDays} d`,
  );
  if (s.running) lines.push(`lock: held by "${s.running.command}" (pid ${s.running.pid} on ${s.running.host}, since ${s.running.started_at})`);
  for (const r of s.readers ?? []) lines.push(`lock: shared by "${r.command}" (pid ${r.pid} on ${r.host}, since ${r.started_at})`);
  if (s.last_backup_run)
    lines.push(`last backup run: ${s.last_backup_run.ok ? 'ok' : 'FAILED'} at ${s.last_backup_run.finished_at}${s.last_backup_run.error ? ` — ${s.last_backup_run.error.message}` : ''}`);
  for (const w of s.warnings) lines.push(`warning: ${w}`);
  if (s.agents.length) {
    const rows = s.agents.map((a) => [
      a.level === 'ok' ? 'ok' : a.level === 'warning' ? 'WARN' : 'FAIL',
      a.name ?? '(unnamed)',
      a.id,
      a.last_snapshot ? `${ageText(a.last_snapshot.age_hours)} ago${a.stale ? ' (stale)' : ''}` : 'none',
      a.last_drill ? `${a.last_drill.ok ? 'passed' : `FAILED: ${a.last_drill.failed_checks.join(', ') || 'error'}`} ${ageText(a.last_drill.age_days * 24)} ago` : 'never',
      a.last_drill?.rto_ms != null ? `${(a.last_drill.rto_ms / 1000).toFixed(1)} s` : '—',
    ]);
    const head = ['', 'agent', 'id', 'last snapshot', 'last drill', 'RTO'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const fmt = (r: string[]): string =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd();
    lines.push('');
    lines.push(fmt(head));
    for (const r of rows) lines.push(fmt(r));
    const notes = s.agents.filter((a) => a.warnings.length);
    if (notes.length) {
      lines.push('');
      for (const a of notes) lines.push(`${a.name ?? a.id}: ${a.warnings.join('; ')}`);
    }
  }
  return lines.join('\n') + '\n';
}
