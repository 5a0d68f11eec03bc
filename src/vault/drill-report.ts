/**
 * Drill reports: the JSON a drill writes (`drills/<snapshot>-<time>.json`, plus a Markdown
 * rendering next to it), and reading them back for `status`.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../core/fs';
import { DRILLS_DIR } from './vault';

export const DRILL_REPORT_FORMAT = 'agent-vault-drill-report';

export type DrillCheckName = 'integrity' | 'decrypt' | 'references' | 'restore' | 'row-counts' | 'in-context-messages' | 'vector-search';
export const DRILL_CHECKS: readonly DrillCheckName[] = ['integrity', 'decrypt', 'references', 'restore', 'row-counts', 'in-context-messages', 'vector-search'];

export interface DrillCheck {
  name: DrillCheckName;
  ok: boolean;
  /** One line: what was checked, or what failed. */
  message: string;
  /** Every individual failure (capped). */
  failures?: string[];
  skipped?: boolean;
}

export interface DrillAgentResult {
  id: string;
  name: string | null;
  /** Id in the restored database when the restore gave the agent a new one. */
  restored_id?: string | null;
  counts?: { expected: Record<string, number>; actual: Record<string, number> };
  probes?: { total: number; passed: number };
}

export interface DrillTimings {
  /**
   * Time to restore: start of the drill → the restore transaction committed (integrity check,
   * decryption, restore), not counting `schema_ms` (preparing the empty scratch database).
   */
  rto_ms: number | null;
  /** Start of the drill → the first vector search that returned the recorded passages (also without `schema_ms`). */
  first_vector_search_ms: number | null;
  verify_ms: number | null;
  schema_ms: number | null;
  restore_ms: number | null;
  checks_ms: number | null;
  total_ms: number;
}

export interface DrillReport {
  format: typeof DRILL_REPORT_FORMAT;
  version: 1;
  snapshot: { id: string | null; file: string; created_at: string | null; encrypted: boolean };
  target: string;
  started_at: string;
  finished_at: string;
  ok: boolean;
  failed_checks: DrillCheckName[];
  checks: DrillCheck[];
  timings: DrillTimings;
  agents: DrillAgentResult[];
  tool_version: string;
  /** Set when the drill could not run at all (bad arguments, no key, …). */
  error?: { code: string; message: string } | null;
  /** Where the report files are, relative to the vault (when written into one). */
  files?: { json: string; markdown: string } | null;
}

function ms(v: number | null): string {
  return v === null ? '—' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function renderDrillMarkdown(r: DrillReport): string {
  const lines: string[] = [];
  lines.push(`# Restore drill: ${r.ok ? 'PASSED' : 'FAILED'}`);
  lines.push('');
  lines.push(`- Snapshot: \`${r.snapshot.id ?? r.snapshot.file}\`${r.snapshot.created_at ? ` (taken ${r.snapshot.created_at})` : ''}${r.snapshot.encrypted ? ', encrypted' : ''}`);
  lines.push(`- Restored into: ${r.target}`);
  lines.push(`- Started: ${r.started_at}; finished: ${r.finished_at}`);
  lines.push(`- Time to restore (RTO): **${ms(r.timings.rto_ms)}**`);
  lines.push(`- Time to first correct vector search: **${ms(r.timings.first_vector_search_ms)}**`);
  if (!r.ok) lines.push(`- Failed checks: ${r.failed_checks.map((c) => `\`${c}\``).join(', ') || (r.error ? `could not run (${r.error.code})` : '—')}`);
  if (r.error) lines.push(`- Error: ${esc(r.error.message)}`);
  lines.push('');
  lines.push('## Checks');
  lines.push('');
  lines.push('| check | result | detail |');
  lines.push('|---|---|---|');
  for (const c of r.checks) lines.push(`| ${c.name} | ${c.skipped ? 'skipped' : c.ok ? 'pass' : '**FAIL**'} | ${esc(c.message)} |`);
  const failures = r.checks.filter((c) => c.failures?.length);
  if (failures.length) {
    lines.push('');
    lines.push('## Failures');
    for (const c of failures) {
      lines.push('');
      lines.push(`### ${c.name}`);
      lines.push('');
      for (const f of c.failures!) lines.push(`- ${esc(f)}`);
    }
  }
  if (r.agents.length) {
    lines.push('');
    lines.push('## Agents');
    lines.push('');
    lines.push('| agent | messages | in context | blocks | tools | passages | probes |');
    lines.push('|---|---|---|---|---|---|---|');
    for (const a of r.agents) {
      const c = (k: string): string => {
        if (!a.counts) return '—';
        const e = a.counts.expected[k];
        const g = a.counts.actual[k];
        return e === g ? String(e) : `**${g ?? '?'} ≠ ${e}**`;
      };
      const probes = a.probes ? `${a.probes.passed}/${a.probes.total}` : '—';
      lines.push(`| ${esc(a.name ?? a.id)} (\`${a.id}\`) | ${c('messages')} | ${c('in_context_messages')} | ${c('blocks')} | ${c('tools')} | ${c('passages')} | ${probes} |`);
    }
  }
  lines.push('');
  lines.push('## Timings');
  lines.push('');
  lines.push(`| phase | time |`);
  lines.push('|---|---|');
  lines.push(`| integrity check + decryption | ${ms(r.timings.verify_ms)} |`);
  lines.push(`| scratch database preparation (not in RTO) | ${ms(r.timings.schema_ms)} |`);
  lines.push(`| restore | ${ms(r.timings.restore_ms)} |`);
  lines.push(`| checks | ${ms(r.timings.checks_ms)} |`);
  lines.push(`| total | ${ms(r.timings.total_ms)} |`);
  lines.push('');
  lines.push(`_agent-vault ${r.tool_version}_`);
  return lines.join('\n') + '\n';
}

function stamp(iso: string): string {
  return iso.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** Writes `<dir>/<snapshot>-<time>.json` and `.md` (atomically, never over an existing report). */
export async function writeDrillReport(dir: string, r: DrillReport, relativeTo?: string): Promise<{ json: string; markdown: string }> {
  await fsp.mkdir(dir, { recursive: true });
  const base = `${(r.snapshot.id ?? path.basename(r.snapshot.file)).replace(/[^A-Za-z0-9._-]/g, '_')}-${stamp(r.started_at)}`;
  let json = path.join(dir, `${base}.json`);
  let md = path.join(dir, `${base}.md`);
  for (
    let n = 2;
    await fsp.lstat(json).then(
      () => true,
      () => false,
    );
    n++
  ) {
    json = path.join(dir, `${base}-${n}.json`);
    md = path.join(dir, `${base}-${n}.md`);
  }
  const rel = (p: string): string => (relativeTo ? path.relative(relativeTo, p).split(path.sep).join('/') : p);
  r.files = { json: rel(json), markdown: rel(md) };
  await writeFileAtomic(md, renderDrillMarkdown(r));
  await writeFileAtomic(json, JSON.stringify(r, null, 2) + '\n');
  return { json, markdown: md };
}

/** Every drill report in `<vault>/drills/`, oldest first (unreadable files are skipped). */
export async function readDrillReports(vaultDir: string): Promise<DrillReport[]> {
  const dir = path.join(vaultDir, DRILLS_DIR);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const out: DrillReport[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      const v = JSON.parse(await fsp.readFile(path.join(dir, n), 'utf8')) as DrillReport;
      if (v?.format === DRILL_REPORT_FORMAT && typeof v.started_at === 'string') out.push(v);
    } catch {
      /* partial or foreign file */
    }
  }
  return out.sort((a, b) => (a.started_at < b.started_at ? -1 : a.started_at > b.started_at ? 1 : 0));
}
