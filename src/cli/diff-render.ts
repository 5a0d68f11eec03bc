/**
 * How `agent-vault diff` prints a DiffReport: human text (coloured only when asked, i.e. on a TTY),
 * Markdown (for a pull request or a ticket) and JSON (schemas/diff.schema.json). CLI output: its
 * notes name the `--format json` that lists what the text leaves out.
 */
import { styleText } from 'node:util';
import { brief } from '../diff/normalize';
import { CATEGORIES, CATEGORY_TITLES, type AgentDiff, type Category, type DiffReport, type FieldChange, type MessageRef, type TextDiff } from '../diff/types';

export type DiffFormat = 'text' | 'md' | 'json';

/** Lines of one text diff shown in text/Markdown output (JSON has them all). */
const MAX_HUNK_LINES = 200;
/** Sample messages / passages of each kind shown in text/Markdown output. */
const SAMPLES_SHOWN = 3;

export function renderJson(r: DiffReport): string {
  return JSON.stringify(r, null, 2) + '\n';
}

export function describeField(c: FieldChange): string {
  return `${c.field}: ${brief(c.a, 60)} → ${brief(c.b, 60)}`;
}

function agentTitle(d: AgentDiff): string {
  const ids = d.a && d.b ? (d.a.id === d.b.id ? d.a.id : `${d.a.id} ↔ ${d.b.id}`) : (d.a ?? d.b)!.id;
  return `agent "${d.key}" (${ids}${d.matched_by && d.matched_by !== 'id' ? `, matched by ${d.matched_by === 'remaining' ? 'elimination' : d.matched_by}` : ''})`;
}

function msgRef(side: 'A' | 'B', m: MessageRef | null): string {
  if (!m) return `${side} has no more messages`;
  return `${side}#${m.position}${m.role ? ` ${m.role}` : ''}${m.preview ? ` ${JSON.stringify(m.preview)}` : ''}`;
}

function textDiffSummary(t: TextDiff): string {
  if (t.hunks.length === 0) return 'only the final newline differs';
  return `+${t.added_lines} −${t.removed_lines} lines${t.replaced_whole ? ', replaced whole' : ''}`;
}

function hunkLines(t: TextDiff): { lines: string[]; omitted: number } {
  const out: string[] = [];
  let total = 0;
  for (const h of t.hunks) {
    total += h.lines.length + 1;
    if (out.length >= MAX_HUNK_LINES) continue;
    out.push(`@@ -${h.a_start},${h.a_lines} +${h.b_start},${h.b_lines} @@`);
    for (const l of h.lines) {
      if (out.length >= MAX_HUNK_LINES) break;
      out.push(l);
    }
  }
  return { lines: out, omitted: total - out.length };
}

/** Each change of an agent as (category, marker, text, optional text diff), in report order. */
interface Item {
  mark: '+' | '-' | '~' | '!' | ' ';
  text: string;
  diff?: TextDiff;
  sub?: string[];
}

function items(d: AgentDiff): Map<Category, { head?: string; list: Item[] }> {
  const m = new Map<Category, { head?: string; list: Item[] }>();
  const put = (c: Category, it: Item): void => {
    if (!m.has(c)) m.set(c, { list: [] });
    m.get(c)!.list.push(it);
  };
  for (const c of d.agent.changes) put('agent', { mark: '~', text: describeField(c) });
  if (d.system_prompt) {
    m.set('system_prompt', { head: `${d.system_prompt.a_lines} → ${d.system_prompt.b_lines} lines (${textDiffSummary(d.system_prompt)})`, list: [] });
    put('system_prompt', { mark: ' ', text: '', diff: d.system_prompt });
  }
  for (const b of d.memory_blocks.added) put('memory_blocks', { mark: '+', text: `${b.label} (${b.chars} chars${b.limit !== null ? `, limit ${b.limit}` : ''}${b.read_only ? ', read-only' : ''})` });
  for (const b of d.memory_blocks.removed) put('memory_blocks', { mark: '-', text: `${b.label} (${b.chars} chars)` });
  for (const b of d.memory_blocks.changed) {
    const parts = b.fields.map(describeField);
    if (b.value) parts.unshift(`value ${textDiffSummary(b.value)}`);
    put('memory_blocks', { mark: '~', text: `${b.label}: ${parts.join('; ')}`, diff: b.value ?? undefined });
  }
  for (const t of d.tools.added) put('tools', { mark: '+', text: `${t.name}${t.tool_type ? ` (${t.tool_type})` : ''}` });
  for (const t of d.tools.removed) put('tools', { mark: '-', text: t.name });
  for (const t of d.tools.changed) {
    const parts: string[] = [];
    if (t.source_code) parts.push(`source_code ${textDiffSummary(t.source_code)}`);
    if (t.json_schema.length) parts.push(`json_schema (${t.json_schema.length} change${t.json_schema.length > 1 ? 's' : ''})`);
    if (t.requirements.length) parts.push(`requirements (${t.requirements.length})`);
    parts.push(...t.fields.map((f) => (f.field === 'description' ? 'description' : describeField(f))));
    const sub = [
      ...t.json_schema.map((c) => `json_schema ${c.path || '/'} ${c.kind}${c.kind === 'changed' ? `: ${brief(c.a, 50)} → ${brief(c.b, 50)}` : c.kind === 'added' ? `: ${brief(c.b, 60)}` : ''}`),
      ...t.requirements.map(
        (r) => `${r.manager} ${r.kind === 'added' ? '+' : r.kind === 'removed' ? '−' : '~'} ${r.name}${r.a || r.b ? ` ${r.a ?? ''}${r.kind === 'changed' ? ' → ' : ''}${r.b ?? ''}`.trimEnd() : ''}`,
      ),
    ];
    put('tools', { mark: '~', text: `${t.name}: ${parts.join('; ')}`, diff: t.source_code ?? undefined, sub });
  }
  const w = d.workflows;
  for (const r of w.rules.added) put('workflows', { mark: '+', text: `rule ${r.text}` });
  for (const r of w.rules.removed) put('workflows', { mark: '-', text: `rule ${r.text}` });
  for (const r of w.rules.changed) put('workflows', { mark: '~', text: `rule ${r.key}: ${r.a}  ⇒  ${r.b}`, sub: r.changes.map(describeField) });
  for (const g of w.groups.added)
    put('workflows', { mark: '+', text: `group ${g.key}: ${g.manager_type ?? 'group'}${g.manager ? ` managed by ${g.manager}` : ''}, members ${g.members.join(', ') || '(none)'}` });
  for (const g of w.groups.removed) put('workflows', { mark: '-', text: `group ${g.key}: ${g.manager_type ?? 'group'}, members ${g.members.join(', ') || '(none)'}` });
  for (const g of w.groups.changed) {
    const parts = g.fields.map(describeField);
    if (g.members_added.length) parts.push(`members + ${g.members_added.join(', ')}`);
    if (g.members_removed.length) parts.push(`members − ${g.members_removed.join(', ')}`);
    put('workflows', { mark: '~', text: `group ${g.key}: ${parts.join('; ')}` });
  }
  if (m.has('workflows') && (w.edges_added.length || w.edges_removed.length)) {
    put('workflows', {
      mark: ' ',
      text: `graph edges: ${w.edges_added.length} added, ${w.edges_removed.length} removed`,
      sub: [...w.edges_added.map((e) => `+ ${e}`), ...w.edges_removed.map((e) => `− ${e}`)],
    });
  }
  for (const c of d.llm_config.changes) put('llm_config', { mark: '~', text: describeField(c) });
  for (const c of d.embedding_config.changes) put('embedding_config', { mark: '~', text: describeField(c) });
  if (d.embedding_config.reembedding_required) m.get('embedding_config')!.head = 'RE-EMBEDDING REQUIRED: vectors stored under the old config are wrong under the new one';
  const msg = d.messages;
  if (d.counts.messages > 0) {
    m.set('messages', {
      head: `A ${msg.a_count}, B ${msg.b_count}: ${msg.appended} appended, ${msg.removed} removed, ${msg.edited} edited (matched by ${msg.matched_by})`,
      list: [],
    });
    if (msg.first_divergence) put('messages', { mark: '!', text: `first divergence: ${msgRef('A', msg.first_divergence.a)} | ${msgRef('B', msg.first_divergence.b)}` });
    for (const x of msg.samples.edited.slice(0, SAMPLES_SHOWN)) put('messages', { mark: '~', text: `${msgRef('A', x.a)} → ${msgRef('B', x.b)}` });
    for (const x of msg.samples.removed.slice(0, SAMPLES_SHOWN)) put('messages', { mark: '-', text: msgRef('A', x.a) });
    for (const x of msg.samples.appended.slice(0, SAMPLES_SHOWN)) put('messages', { mark: '+', text: msgRef('B', x.b) });
    const more =
      msg.edited +
      msg.removed +
      msg.appended -
      Math.min(SAMPLES_SHOWN, msg.samples.edited.length) -
      Math.min(SAMPLES_SHOWN, msg.samples.removed.length) -
      Math.min(SAMPLES_SHOWN, msg.samples.appended.length);
    if (more > 0) put('messages', { mark: ' ', text: `… and ${more} more (--format json lists up to 10 of each kind)` });
    if (msg.in_context.changed) put('messages', { mark: '~', text: `in-context window: ${msg.in_context.a_count} → ${msg.in_context.b_count} messages (changed)` });
  }
  const p = d.passages;
  if (d.counts.passages > 0) {
    m.set('passages', {
      head: `A ${p.a_count}, B ${p.b_count} (${p.delta! >= 0 ? '+' : ''}${p.delta}): ${p.added} added, ${p.removed} removed, ${p.changed} changed${p.vectors_changed ? ` (${p.vectors_changed} with a new embedding)` : ''}`,
      list: [],
    });
    for (const c of p.samples.changed.slice(0, SAMPLES_SHOWN)) put('passages', { mark: '~', text: `${c.a.id ?? `#${c.a.position}`}: ${c.fields.join(', ')} ${JSON.stringify(c.b.preview)}` });
    for (const c of p.samples.removed.slice(0, SAMPLES_SHOWN)) put('passages', { mark: '-', text: `${c.id ?? `#${c.position}`} ${JSON.stringify(c.preview)}` });
    for (const c of p.samples.added.slice(0, SAMPLES_SHOWN)) put('passages', { mark: '+', text: `${c.id ?? `#${c.position}`} ${JSON.stringify(c.preview)}` });
    const more =
      p.added + p.removed + p.changed - Math.min(SAMPLES_SHOWN, p.samples.changed.length) - Math.min(SAMPLES_SHOWN, p.samples.removed.length) - Math.min(SAMPLES_SHOWN, p.samples.added.length);
    if (more > 0) put('passages', { mark: ' ', text: `… and ${more} more (--format json lists up to 20 of each kind)` });
  }
  for (const k of d.environment.added) put('environment', { mark: '+', text: k });
  for (const k of d.environment.removed) put('environment', { mark: '-', text: k });
  return m;
}

type Paint = (style: Parameters<typeof styleText>[0], s: string) => string;

function painter(color: boolean): Paint {
  return color ? (style, s) => styleText(style, s) : (_style, s) => s;
}

const MARK_STYLE = { '+': 'green', '-': 'red', '~': 'yellow', '!': 'magenta', ' ': 'reset' } as const;

const COMPONENT_TITLES = { skills: 'skill', unattached_blocks: 'block no agent attaches', unattached_tools: 'tool no agent attaches' } as const;

/** One line per component present on one side only ("- skill x: only in A"). */
export function componentLines(r: DiffReport): string[] {
  const out: string[] = [];
  if (!r.components) return out;
  for (const k of Object.keys(COMPONENT_TITLES) as Array<keyof typeof COMPONENT_TITLES>) {
    const c = r.components[k];
    for (const v of c.a_only) out.push(`- ${COMPONENT_TITLES[k]} ${JSON.stringify(v)}: only in A`);
    for (const v of c.b_only) out.push(`+ ${COMPONENT_TITLES[k]} ${JSON.stringify(v)}: only in B`);
  }
  return out;
}

export function renderText(r: DiffReport, opts: { color?: boolean } = {}): string {
  const paint = painter(!!opts.color);
  const out: string[] = [];
  out.push(`A: ${r.a.label} (${r.a.format ?? r.a.kind})`);
  out.push(`B: ${r.b.label} (${r.b.format ?? r.b.kind})`);
  for (const d of r.agents) {
    const n = CATEGORIES.reduce((s, c) => s + d.counts[c], 0);
    if (d.status === 'added') {
      out.push(paint('green', `+ ${agentTitle(d)}: only in B`));
      continue;
    }
    if (d.status === 'removed') {
      out.push(paint('red', `- ${agentTitle(d)}: only in A`));
      continue;
    }
    out.push(paint('bold', `${agentTitle(d)}: ${n === 0 ? 'no changes' : `${n} change${n > 1 ? 's' : ''}`}`));
    const m = items(d);
    for (const c of CATEGORIES) {
      const sec = m.get(c);
      if (!sec) continue;
      const head = sec.head ? `: ${sec.head}` : ':';
      out.push(`  ${paint('cyan', CATEGORY_TITLES[c])}${c === 'embedding_config' && d.embedding_config.reembedding_required ? paint(['red', 'bold'], head) : head}`);
      for (const it of sec.list) {
        if (it.text) out.push(`    ${paint(MARK_STYLE[it.mark], `${it.mark === ' ' ? '' : `${it.mark === '-' ? '−' : it.mark} `}${it.text}`)}`);
        for (const s of it.sub ?? []) out.push(`        ${s}`);
        if (it.diff) {
          const { lines, omitted } = hunkLines(it.diff);
          const indent = it.text ? '        ' : '    ';
          for (const l of lines) out.push(indent + (l.startsWith('@@') ? paint('cyan', l) : l.startsWith('+') ? paint('green', l) : l.startsWith('-') ? paint('red', l) : l));
          if (omitted > 0) out.push(`${indent}… ${omitted} more lines (--format json has them all)`);
        }
      }
    }
    if (!d.messages.compared && d.messages.a_count + d.messages.b_count > 0) out.push(`  messages: not compared`);
    if (!d.passages.compared && d.passages.reason) out.push(paint('dim', `  archival passages: not compared (${d.passages.reason})`));
  }
  for (const line of componentLines(r)) out.push(line.startsWith('+') ? paint('green', line) : paint('red', line));
  const s = r.summary;
  out.push(
    r.identical
      ? 'no differences'
      : paint(
          'bold',
          `${s.total_changes} change${s.total_changes > 1 ? 's' : ''}: ${CATEGORIES.filter((c) => s.counts[c] > 0)
            .map((c) => `${CATEGORY_TITLES[c]} ${s.counts[c]}`)
            .join(
              ', ',
            )}${s.agents_added ? `, agents added ${s.agents_added}` : ''}${s.agents_removed ? `, agents removed ${s.agents_removed}` : ''}${s.components_changed ? `, components ${s.components_changed}` : ''}`,
        ),
  );
  return out.join('\n') + '\n';
}

function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function mdCode(s: string): string {
  const ticks = s.includes('`') ? '``' : '`';
  return `${ticks}${s}${ticks}`;
}

function fence(lines: string[]): string {
  let f = '```';
  while (lines.some((l) => l.includes(f))) f += '`';
  return `${f}diff\n${lines.join('\n')}\n${f}`;
}

export function renderMarkdown(r: DiffReport): string {
  const out: string[] = [];
  out.push('## Agent diff', '');
  out.push(`- **A:** ${mdCode(r.a.label)} (${r.a.format ?? r.a.kind})`);
  out.push(`- **B:** ${mdCode(r.b.label)} (${r.b.format ?? r.b.kind})`);
  out.push('');
  if (r.identical) {
    out.push('**No differences.**');
    return out.join('\n') + '\n';
  }
  out.push('| agent | status | ' + CATEGORIES.map((c) => CATEGORY_TITLES[c]).join(' | ') + ' |');
  out.push('|---|---|' + CATEGORIES.map(() => '---:').join('|') + '|');
  for (const d of r.agents) out.push(`| ${mdCell(d.key)} | ${d.status} | ${CATEGORIES.map((c) => (d.counts[c] ? String(d.counts[c]) : '')).join(' | ')} |`);
  out.push('');
  for (const d of r.agents) {
    if (d.status === 'unchanged') continue;
    out.push(`### ${mdCell(agentTitle(d))}: ${d.status}`, '');
    if (d.status !== 'changed') continue;
    const m = items(d);
    for (const c of CATEGORIES) {
      const sec = m.get(c);
      if (!sec) continue;
      const warn = c === 'embedding_config' && d.embedding_config.reembedding_required;
      out.push(`#### ${CATEGORY_TITLES[c][0].toUpperCase()}${CATEGORY_TITLES[c].slice(1)}`, '');
      if (sec.head) out.push(warn ? `> **⚠ ${sec.head}**` : sec.head, '');
      for (const it of sec.list) {
        if (it.text) {
          const mark = { '+': '➕', '-': '➖', '~': '✏️', '!': '⚠', ' ': '' }[it.mark];
          out.push(`- ${mark} ${mdCell(it.text)}`);
          for (const s of it.sub ?? []) out.push(`  - ${mdCell(s)}`);
        }
        if (it.diff && it.diff.hunks.length) {
          const { lines, omitted } = hunkLines(it.diff);
          if (omitted > 0) lines.push(`… ${omitted} more lines`);
          out.push(
            '',
            ...fence(lines)
              .split('\n')
              .map((l) => (it.text ? `  ${l}` : l)),
            '',
          );
        }
      }
      out.push('');
    }
    if (!d.passages.compared && d.passages.reason) out.push(`_Archival passages not compared: ${mdCell(d.passages.reason)}._`, '');
  }
  const comp = componentLines(r);
  if (comp.length) out.push('### Outside the agents', '', fence(comp), '');
  const s = r.summary;
  out.push(`**${s.total_changes} change${s.total_changes > 1 ? 's' : ''}** in ${s.agents_changed + s.agents_added + s.agents_removed} agent(s).`);
  return out.join('\n') + '\n';
}

export function renderReport(r: DiffReport, format: DiffFormat, opts: { color?: boolean } = {}): string {
  switch (format) {
    case 'json':
      return renderJson(r);
    case 'md':
      return renderMarkdown(r);
    default:
      return renderText(r, opts);
  }
}
