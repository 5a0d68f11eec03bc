/**
 * Retention: which snapshots `prune` keeps. Grandfather-father-son rules with the semantics of
 * well-known backup tools (restic's `forget`, borg's `prune`):
 *
 * - snapshots are considered newest first;
 * - `keepLast n` keeps the n newest snapshots;
 * - `keepHourly/Daily/Weekly/Monthly/Yearly n` each keep the newest snapshot in each of the n
 *   newest hours/days/ISO weeks/months/years **that have snapshots** (empty periods do not count);
 * - every rule is applied independently, a snapshot is kept if any rule keeps it, and the reasons
 *   of every rule that keeps it are reported.
 *
 * Periods are calendar periods in UTC (ISO 8601 weeks, Monday first). The rules are applied per
 * agent (and per Qdrant collection): each agent's own history gets the policy, and a snapshot is
 * kept if it is kept for any agent it holds. On top of the rules, the newest snapshot of every
 * agent is always kept, so prune never deletes the last snapshot of an agent.
 */
import { AgentVaultError } from '../core/errors';

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
}

export const RETENTION_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type RetentionRule = (typeof RETENTION_RULES)[number] | 'newest-of-agent';

const RULE_KEY: Record<(typeof RETENTION_RULES)[number], keyof RetentionPolicy> = {
  last: 'keepLast',
  hourly: 'keepHourly',
  daily: 'keepDaily',
  weekly: 'keepWeekly',
  monthly: 'keepMonthly',
  yearly: 'keepYearly',
};

export interface RetentionSnapshot {
  id: string;
  /** RFC 3339 time the snapshot was taken. */
  created_at: string;
  /** Agent ids in the snapshot. */
  agents: readonly string[];
  /** Qdrant collections in the snapshot. */
  collections?: readonly string[];
}

export interface KeepReason {
  rule: RetentionRule;
  /** The period (e.g. "2026-03-01", "2026-W09"), or "#3" for keepLast. */
  bucket: string;
  /** Whose history the rule was applied to ("agent:<id>", "collection:<name>" or "(empty)"). */
  groups: string[];
}

export interface RetentionDecision {
  id: string;
  created_at: string;
  keep: boolean;
  reasons: KeepReason[];
}

export interface RetentionPlan {
  /** Every snapshot, newest first. */
  decisions: RetentionDecision[];
  keep: RetentionDecision[];
  remove: RetentionDecision[];
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** ISO 8601 week of a UTC date: "2026-W09" (the ISO week-numbering year may differ from the calendar year). */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dow = t.getUTCDay() || 7; // Monday = 1 … Sunday = 7
  t.setUTCDate(t.getUTCDate() + 4 - dow); // the Thursday of this week decides the year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${pad(week)}`;
}

export function bucketOf(rule: Exclude<RetentionRule, 'last' | 'newest-of-agent'>, d: Date): string {
  const y = d.getUTCFullYear();
  const m = pad(d.getUTCMonth() + 1);
  const day = pad(d.getUTCDate());
  switch (rule) {
    case 'hourly':
      return `${y}-${m}-${day}T${pad(d.getUTCHours())}`;
    case 'daily':
      return `${y}-${m}-${day}`;
    case 'weekly':
      return isoWeek(d);
    case 'monthly':
      return `${y}-${m}`;
    case 'yearly':
      return String(y);
  }
}

/** Checks a policy: every count a non-negative integer, and at least one rule. */
export function checkPolicy(policy: RetentionPolicy): void {
  let any = false;
  for (const rule of RETENTION_RULES) {
    const v = policy[RULE_KEY[rule]];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new AgentVaultError('usage', `retention rule ${RULE_KEY[rule]} must be a non-negative integer, got ${String(v)}`, { kind: 'usage', remedy: 'retention' });
    }
    if (v > 0) any = true;
  }
  if (!any) {
    throw new AgentVaultError('usage', 'no retention rule given: the policy needs at least one of keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly above 0', {
      kind: 'usage',
      remedy: 'retention',
      hint: 'prune without a rule would keep only the newest snapshot of each agent; that is refused',
    });
  }
}

function time(s: RetentionSnapshot): number {
  const t = Date.parse(s.created_at);
  if (!Number.isFinite(t)) throw new AgentVaultError('vault-index', `snapshot ${s.id} has an invalid time ${JSON.stringify(s.created_at)}`);
  return t;
}

/** Newest first; equal times by id, descending (ids start with the time, so this is stable). */
function newestFirst(a: RetentionSnapshot, b: RetentionSnapshot): number {
  return time(b) - time(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

function groupsOf(s: RetentionSnapshot): string[] {
  const g = [...new Set(s.agents)].map((a) => `agent:${a}`);
  for (const c of new Set(s.collections ?? [])) g.push(`collection:${c}`);
  return g.length ? g : ['(empty)'];
}

/** Decides, for every snapshot, whether the policy keeps it and why. Pure; deletes nothing. */
export function planRetention(snapshots: readonly RetentionSnapshot[], policy: RetentionPolicy): RetentionPlan {
  checkPolicy(policy);
  const seen = new Set<string>();
  for (const s of snapshots) {
    if (seen.has(s.id)) throw new AgentVaultError('vault-index', `snapshot id ${s.id} occurs twice`);
    seen.add(s.id);
  }
  const sorted = [...snapshots].sort(newestFirst);
  const reasons = new Map<string, Map<string, KeepReason>>();
  const addReason = (id: string, rule: RetentionRule, bucket: string, group: string): void => {
    let m = reasons.get(id);
    if (!m) reasons.set(id, (m = new Map()));
    const k = `${rule}\u0000${bucket}`;
    const r = m.get(k);
    if (r) r.groups.push(group);
    else m.set(k, { rule, bucket, groups: [group] });
  };

  const histories = new Map<string, RetentionSnapshot[]>();
  for (const s of sorted) {
    for (const g of groupsOf(s)) {
      let h = histories.get(g);
      if (!h) histories.set(g, (h = []));
      h.push(s);
    }
  }

  for (const [group, history] of histories) {
    for (const rule of RETENTION_RULES) {
      const n = policy[RULE_KEY[rule]] ?? 0;
      if (n <= 0) continue;
      let remaining = n;
      let last: string | undefined;
      for (let i = 0; i < history.length && remaining > 0; i++) {
        const s = history[i];
        const bucket = rule === 'last' ? `#${i + 1}` : bucketOf(rule, new Date(time(s)));
        if (bucket === last) continue;
        last = bucket;
        remaining--;
        addReason(s.id, rule, bucket, group);
      }
    }
    // never delete the last snapshot of an agent (or collection)
    const newest = history[0];
    if (!reasons.has(newest.id)) addReason(newest.id, 'newest-of-agent', 'newest', group);
  }

  const order: Record<RetentionRule, number> = { last: 0, hourly: 1, daily: 2, weekly: 3, monthly: 4, yearly: 5, 'newest-of-agent': 6 };
  const decisions: RetentionDecision[] = sorted.map((s) => {
    const r = [...(reasons.get(s.id)?.values() ?? [])].sort((a, b) => order[a.rule] - order[b.rule]);
    return { id: s.id, created_at: s.created_at, keep: r.length > 0, reasons: r };
  });
  return { decisions, keep: decisions.filter((d) => d.keep), remove: decisions.filter((d) => !d.keep) };
}

/** One line per reason, e.g. "daily 2026-03-01 (agent-1, agent-2)". */
export function describeReasons(reasons: readonly KeepReason[], opts: { names?: ReadonlyMap<string, string> } = {}): string {
  return reasons
    .map((r) => {
      const who = r.groups.map((g) => {
        if (g.startsWith('agent:')) {
          const id = g.slice(6);
          const n = opts.names?.get(id);
          return n ? `${n} (${id})` : id;
        }
        return g;
      });
      const rule = r.rule === 'newest-of-agent' ? 'newest snapshot of' : r.rule === 'last' ? `last ${r.bucket}` : `${r.rule} ${r.bucket}`;
      return r.rule === 'newest-of-agent' ? `${rule} ${who.join(', ')}` : `${rule} [${who.join(', ')}]`;
    })
    .join('; ');
}
