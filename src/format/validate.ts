/**
 * Validation of agent files: JSON Schema (ajv, compiled once) plus the reference checks that
 * Letta's own import skips. Every finding names a JSON Pointer, a line and a column.
 * Severities and codes are documented in docs/VALIDATION.md.
 */
import type { ErrorObject } from 'ajv';
import { AgentVaultError } from '../core/errors';
import { isObj } from '../core/json';
import { parseAgentFileText, readAgentFile, type ParsedAgentFile } from './af';
import { locatePointers } from './locate';
import { getValidator } from './schemas';
import type { AgentFileCounts, AgentFileFormat, AgentFileV1, AgentFileV2, Json } from './types';

export type Severity = 'error' | 'warning';

export interface Finding {
  severity: Severity;
  code: string;
  message: string;
  pointer: string;
  line?: number;
  column?: number;
}

export interface ValidationReport {
  file?: string;
  format?: AgentFileFormat;
  revision?: string | null;
  version?: string | null;
  counts?: AgentFileCounts;
  valid: boolean;
  errors: Finding[];
  warnings: Finding[];
}

/** At most this many schema errors are reported per document (the rest are counted). */
export const MAX_SCHEMA_ERRORS = 50;

export async function validateAgentFilePath(path: string): Promise<ValidationReport> {
  try {
    return validateParsed(await readAgentFile(path));
  } catch (e) {
    return reportFromReadError(e, path);
  }
}

export function validateAgentFileText(text: string, file?: string): ValidationReport {
  try {
    return validateParsed(parseAgentFileText(text, file));
  } catch (e) {
    return reportFromReadError(e, file);
  }
}

/** A read/parse failure becomes a one-error report (I/O failures are rethrown: kind 'usage' or 'io'). */
export function reportFromReadError(e: unknown, file?: string): ValidationReport {
  if (!(e instanceof AgentVaultError)) throw e;
  if (e.code === 'io') throw e;
  const loc = e.location ?? {};
  return {
    file,
    valid: false,
    errors: [{ severity: 'error', code: e.code, message: e.message, pointer: loc.pointer ?? '', line: loc.line, column: loc.column }],
    warnings: [],
  };
}

export function validateParsed(parsed: ParsedAgentFile): ValidationReport {
  const findings: Finding[] = [];
  for (const n of parsed.notes) findings.push({ severity: 'warning', code: n.code, message: n.message, pointer: '', line: n.line, column: n.column });

  const isV1 = parsed.format === 'v1';
  const validate = getValidator(isV1 ? 'agent-file.v1' : 'agent-file.v2');
  const schemaOk = validate(parsed.doc) as boolean;
  if (!schemaOk) findings.push(...describeAjvErrors(validate.errors ?? []));
  // Reference checks run on whatever shape is there; they only look at well-typed parts.
  if (isV1) findings.push(...checkV1References(parsed.doc as AgentFileV1));
  else findings.push(...checkV2References(parsed.doc as AgentFileV2));

  attachPositions(parsed.text, findings);
  const errors = findings.filter((f) => f.severity === 'error');
  const warnings = findings.filter((f) => f.severity === 'warning');
  return {
    file: parsed.source,
    format: parsed.format,
    revision: parsed.revision,
    version: parsed.version,
    counts: parsed.counts,
    valid: errors.length === 0,
    errors,
    warnings,
  };
}

function attachPositions(text: string, findings: Finding[]): void {
  const need = findings.filter((f) => f.line === undefined).map((f) => f.pointer);
  if (!need.length) return;
  const pos = locatePointers(text, need);
  for (const f of findings) {
    if (f.line !== undefined) continue;
    const p = pos.get(f.pointer);
    if (p) {
      f.line = p.line;
      f.column = p.column;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Schema errors in plain words

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return typeof v === 'boolean' ? 'a boolean' : typeof v;
}

const article = (t: string): string => (t === 'null' ? 'null' : /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`);

/**
 * ajv with allErrors reports every failed branch of every anyOf/oneOf. Condense to what a person
 * needs: the deepest concrete problems, with type alternatives merged ("a string or null").
 */
export function describeAjvErrors(errs: readonly ErrorObject[]): Finding[] {
  const kept = new Set(errs);
  // For every failed anyOf/oneOf (outermost first), keep only the errors of its closest branch:
  // the one whose type matched, then the one with the fewest errors. Other branches are noise.
  const combinators = errs.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const c of combinators) {
    if (!kept.has(c)) continue;
    const prefix = c.schemaPath + '/';
    const branches = new Map<string, ErrorObject[]>();
    for (const e of kept) {
      if (!e.schemaPath.startsWith(prefix)) continue;
      const b = e.schemaPath.slice(prefix.length).split('/')[0];
      (branches.get(b) ?? branches.set(b, []).get(b)!).push(e);
    }
    if (branches.size < 2) continue;
    const typeMismatchHere = (list: ErrorObject[]) => list.some((e) => e.keyword === 'type' && e.instancePath === c.instancePath);
    const constMismatchHere = (list: ErrorObject[]) => list.some((e) => (e.keyword === 'const' || e.keyword === 'enum') && e.instancePath.startsWith(c.instancePath));
    const candidates = [...branches.values()];
    const matchedType = candidates.filter((l) => !typeMismatchHere(l));
    if (matchedType.length === 0) {
      // No branch has the right type: keep the type errors only, merged below ("a string or null").
      for (const l of candidates) for (const e of l) if (!(e.keyword === 'type' && e.instancePath === c.instancePath)) kept.delete(e);
      kept.delete(c);
      continue;
    }
    // Prefer branches whose discriminating constants matched, then the fewest errors.
    const pool = matchedType.some((l) => !constMismatchHere(l)) ? matchedType.filter((l) => !constMismatchHere(l)) : matchedType;
    if (pool === matchedType && matchedType.every(constMismatchHere) && matchedType.length > 1) {
      // Every branch rejects the discriminating value: report the allowed values once.
      const allowed = new Set<string>();
      let at = c.instancePath;
      for (const l of matchedType)
        for (const e of l) {
          if (e.keyword === 'const') {
            allowed.add(JSON.stringify((e.params as any).allowedValue));
            at = e.instancePath;
          }
          if (e.keyword === 'enum') {
            for (const v of (e.params as any).allowedValues) allowed.add(JSON.stringify(v));
            at = e.instancePath;
          }
        }
      for (const l of candidates) for (const e of l) kept.delete(e);
      kept.delete(c);
      kept.add({ ...c, keyword: 'enum', instancePath: at, params: { allowedValues: [...allowed].map((v) => JSON.parse(v)) }, data: pickAt(c.data, c.instancePath, at) } as ErrorObject);
      continue;
    }
    const best = pool.reduce((a, b) => (b.length < a.length ? b : a));
    for (const l of candidates) if (l !== best) for (const e of l) kept.delete(e);
    kept.delete(c);
  }

  // Merge type errors at the same instance path.
  const byPath = new Map<string, { types: Set<string>; other: ErrorObject[]; data?: unknown }>();
  for (const e of kept) {
    if (e.keyword === 'if' || e.keyword === 'allOf') continue;
    const slot = byPath.get(e.instancePath) ?? { types: new Set<string>(), other: [] };
    byPath.set(e.instancePath, slot);
    if (e.keyword === 'type') {
      const t = (e.params as { type: string | string[] }).type;
      for (const x of Array.isArray(t) ? t : String(t).split(',')) slot.types.add(x);
      slot.data = e.data;
    } else slot.other.push(e);
  }

  const out: Finding[] = [];
  for (const [path, slot] of byPath) {
    if (slot.types.size) {
      out.push({
        severity: 'error',
        code: 'schema-type',
        pointer: path,
        message: `expected ${joinOr([...slot.types].map(article))}, found ${typeName(slot.data)}`,
      });
      continue;
    }
    for (const e of dedupe(slot.other)) out.push({ severity: 'error', code: 'schema-' + e.keyword, pointer: path, message: plain(e) });
  }
  out.sort((a, b) => (a.pointer < b.pointer ? -1 : a.pointer > b.pointer ? 1 : 0));
  if (out.length > MAX_SCHEMA_ERRORS) {
    const extra = out.length - MAX_SCHEMA_ERRORS;
    out.length = MAX_SCHEMA_ERRORS;
    out.push({ severity: 'error', code: 'schema-more', pointer: '', message: `${extra} more schema errors not shown` });
  }
  return out;
}

/** The value at pointer `to`, given the value at its ancestor pointer `from`. */
function pickAt(data: unknown, from: string, to: string): unknown {
  let v: any = data;
  for (const seg of to.slice(from.length).split('/').filter(Boolean)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

function dedupe(errs: ErrorObject[]): ErrorObject[] {
  const seen = new Set<string>();
  return errs.filter((e) => {
    const k = e.keyword + JSON.stringify(e.params);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** A short rendering of a value for a message, cheap even for a 50 MB string. */
function preview(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (v === null || typeof v !== 'object') return String(v);
  return typeName(v);
}

function joinOr(xs: string[]): string {
  const u = [...new Set(xs)];
  return u.length <= 1 ? (u[0] ?? '') : u.slice(0, -1).join(', ') + ' or ' + u[u.length - 1];
}

function plain(e: ErrorObject): string {
  const p = e.params as Record<string, any>;
  const title = (e.parentSchema as { title?: string } | undefined)?.title;
  switch (e.keyword) {
    case 'required':
      return `missing required field "${p.missingProperty}"${title ? ` (${title})` : ''}`;
    case 'additionalProperties':
      return `unexpected field "${p.additionalProperty}"${title ? ` in ${title}` : ''}`;
    case 'enum':
      return `expected one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, found ${preview(e.data)}`;
    case 'const':
      return `expected ${JSON.stringify(p.allowedValue)}, found ${preview(e.data)}`;
    case 'discriminator':
      return p.error === 'mapping'
        ? `unknown ${p.tag} ${JSON.stringify((e.data as Record<string, unknown>)?.[p.tag])}${title ? ` for ${title}` : ''}`
        : `missing or invalid "${p.tag}" field${title ? ` for ${title}` : ''}`;
    case 'minItems':
      return `expected at least ${p.limit} item(s)`;
    case 'maxItems':
      return `expected at most ${p.limit} item(s)`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `expected a number ${p.comparison} ${p.limit}, found ${preview(e.data)}`;
    case 'minLength':
      return `expected a string of at least ${p.limit} character(s)`;
    case 'maxLength':
      return `expected a string of at most ${p.limit} character(s)`;
    case 'pattern':
      return `expected a string matching ${p.pattern}, found ${preview(e.data)}`;
    case 'format':
      return `expected a ${p.format} string, found ${preview(e.data)}`;
    case 'uniqueItems':
      return `items ${p.j} and ${p.i} are duplicates`;
    default:
      return e.message ?? e.keyword;
  }
}

// ---------------------------------------------------------------------------------------------
// Reference checks

const arr = (v: unknown): any[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): v is string => typeof v === 'string';

/**
 * Severity of a dangling reference, by field. Agent `group_ids` is not used by Letta's import
 * (groups are created from the top-level `groups` list), so a dangling one loses nothing: warning.
 */
const DANGLING_SEVERITY: Record<string, Severity> = { group_ids: 'warning' };

/** File-local id prefixes Letta's import requires (`<prefix>-<integer>`). Skills are not checked by Letta. */
const ID_PREFIX: Record<string, string> = {
  agent: 'agent',
  group: 'group',
  block: 'block',
  file: 'file',
  source: 'source',
  tool: 'tool',
  mcp_server: 'mcp_server',
  message: 'message',
};

const ID_PATTERN: Record<string, RegExp> = Object.fromEntries(Object.entries(ID_PREFIX).map(([k, p]) => [k, new RegExp(`^${p}-\\d+$`)]));

export function checkV2References(doc: AgentFileV2): Finding[] {
  const out: Finding[] = [];
  if (!isObj(doc)) return out;
  // Compact registries: one string per id (its kind) and message indexes, not objects, so a
  // file with hundreds of thousands of messages costs little beyond the parsed document.
  const ids = new Map<string, string>();
  const locate = (id: string): string => firstPointerOf(doc, id);
  const register = (kind: string, id: unknown, pointer: () => string) => {
    if (!str(id)) return;
    if (ID_PATTERN[kind] && !ID_PATTERN[kind].test(id)) {
      out.push({
        severity: 'error',
        code: 'id-format',
        pointer: pointer() + '/id',
        message: `${kind} id "${id}" is not of the form "${ID_PREFIX[kind]}-<number>"; Letta's import rejects file-local ids of any other form`,
      });
    }
    const prev = ids.get(id);
    if (prev !== undefined) {
      out.push({
        severity: 'error',
        code: 'duplicate-id',
        pointer: pointer(),
        message: `id "${id}" is used twice: by this ${kind} and by the ${prev} at ${locate(id)} (ids must be unique across the whole file)`,
      });
    } else ids.set(id, kind);
  };
  const top: [string, string][] = [
    ['agents', 'agent'],
    ['blocks', 'block'],
    ['tools', 'tool'],
    ['groups', 'group'],
    ['files', 'file'],
    ['sources', 'source'],
    ['mcp_servers', 'mcp_server'],
    ['skills', 'skill'],
  ];
  for (const [field, kind] of top) arr(doc[field]).forEach((x, i) => isObj(x) && register(kind, x.id, () => `/${field}/${i}`));
  /** per agent id: in-context message id → index in that agent's messages (only in-context ones are kept) */
  const agentMessages = new Map<string, Map<string, number>>();
  arr(doc.agents).forEach((a, ai) => {
    if (!isObj(a)) return;
    const wanted = new Set(arr(a.in_context_message_ids).filter(str));
    const msgs = new Map<string, number>();
    agentMessages.set(String(a.id), msgs);
    const list = arr(a.messages);
    for (let mi = 0; mi < list.length; mi++) {
      const m = list[mi];
      if (!isObj(m)) continue;
      const id = m.id;
      register('message', id, () => `/agents/${ai}/messages/${mi}`);
      if (str(id) && wanted.has(id)) msgs.set(id, mi);
      if (str(m.agent_id) && str(a.id) && m.agent_id !== a.id) {
        out.push({
          severity: 'warning',
          code: 'message-agent-mismatch',
          pointer: `/agents/${ai}/messages/${mi}/agent_id`,
          message: `message "${id}" says it belongs to "${m.agent_id}" but is listed under agent "${a.id}"`,
        });
      }
    }
  });

  const blockById = new Map<string, Record<string, any>>();
  arr(doc.blocks).forEach((b) => isObj(b) && str(b.id) && blockById.set(b.id, b));
  const has = (kind: string, id: string) => ids.get(id) === kind;
  const dangling = (pointer: string, owner: string, field: string, kind: string, id: unknown) => {
    if (!str(id)) return;
    if (has(kind, id)) return;
    const wrongKind = ids.get(id);
    out.push({
      severity: DANGLING_SEVERITY[field] ?? 'error',
      code: 'dangling-reference',
      pointer,
      message: wrongKind
        ? `${owner} field "${field}" refers to "${id}", which is a ${wrongKind} (${locate(id)}), not a ${kind}`
        : `${owner} field "${field}" refers to ${kind} "${id}", which is not in the file (dangling reference)`,
    });
  };

  arr(doc.agents).forEach((a, ai) => {
    if (!isObj(a)) return;
    const ap = `/agents/${ai}`;
    const owner = `agent "${a.id}"`;
    const refs: [string, string][] = [
      ['tool_ids', 'tool'],
      ['block_ids', 'block'],
      ['source_ids', 'source'],
      ['group_ids', 'group'],
    ];
    for (const [field, kind] of refs) arr(a[field]).forEach((id, i) => dangling(`${ap}/${field}/${i}`, owner, field, kind, id));
    const msgs = agentMessages.get(String(a.id)) ?? new Map<string, number>();
    const msgList = arr(a.messages);
    const seenInContext = new Set<string>();
    arr(a.in_context_message_ids).forEach((id, i) => {
      if (!str(id)) return;
      const p = `${ap}/in_context_message_ids/${i}`;
      if (seenInContext.has(id)) out.push({ severity: 'error', code: 'duplicate-reference', pointer: p, message: `${owner} lists in-context message "${id}" twice` });
      seenInContext.add(id);
      if (!msgs.has(id)) {
        const elsewhere = ids.get(id);
        out.push({
          severity: 'error',
          code: 'dangling-reference',
          pointer: p,
          message: elsewhere
            ? `${owner} field "in_context_message_ids" refers to "${id}", which is not one of this agent's messages (it is a ${elsewhere} at ${locate(id)})`
            : `${owner} field "in_context_message_ids" refers to message "${id}", which is not in the file (dangling reference)`,
        });
      }
    });
    arr(a.files_agents).forEach((fa, i) => {
      if (!isObj(fa)) return;
      const p = `${ap}/files_agents/${i}`;
      dangling(`${p}/file_id`, `${owner} files_agents[${i}]`, 'file_id', 'file', fa.file_id);
      dangling(`${p}/source_id`, `${owner} files_agents[${i}]`, 'source_id', 'source', fa.source_id);
      if (str(fa.agent_id) && fa.agent_id !== a.id) {
        out.push({ severity: 'error', code: 'dangling-reference', pointer: `${p}/agent_id`, message: `${owner} files_agents[${i}] names agent "${fa.agent_id}", not its own agent` });
      }
    });
    // Block labels must be unique per agent (Letta: UNIQUE(agent_id, block_label)).
    const labels = new Map<string, string>();
    arr(a.block_ids).forEach((bid, i) => {
      const b = str(bid) ? blockById.get(bid) : undefined;
      if (!b || !str(b.label)) return;
      const prev = labels.get(b.label);
      if (prev) {
        out.push({
          severity: 'error',
          code: 'duplicate-block-label',
          pointer: `${ap}/block_ids/${i}`,
          message: `${owner} has two blocks labelled "${b.label}" ("${prev}" and "${bid}"); Letta allows one block per label per agent`,
        });
      } else labels.set(b.label, bid);
    });
    const inContext: { pointer: string; msg: Record<string, any> }[] = [];
    for (const id of arr(a.in_context_message_ids)) {
      const mi = str(id) ? msgs.get(id) : undefined;
      if (mi !== undefined) inContext.push({ pointer: `${ap}/messages/${mi}`, msg: msgList[mi] });
    }
    checkToolPairs(inContext, owner, out);
  });

  arr(doc.groups).forEach((g, gi) => {
    if (!isObj(g)) return;
    const gp = `/groups/${gi}`;
    const owner = `group "${g.id}"`;
    arr(g.agent_ids).forEach((id, i) => dangling(`${gp}/agent_ids/${i}`, owner, 'agent_ids', 'agent', id));
    arr(g.shared_block_ids).forEach((id, i) => dangling(`${gp}/shared_block_ids/${i}`, owner, 'shared_block_ids', 'block', id));
    if (isObj(g.manager_config)) dangling(`${gp}/manager_config/manager_agent_id`, owner, 'manager_agent_id', 'agent', g.manager_config.manager_agent_id);
  });
  arr(doc.files).forEach((f, fi) => isObj(f) && dangling(`/files/${fi}/source_id`, `file "${f.id}"`, 'source_id', 'source', f.source_id));

  const toolNames = new Map<string, number>();
  arr(doc.tools).forEach((t, ti) => {
    if (!isObj(t) || !str(t.name)) return;
    if (toolNames.has(t.name)) {
      out.push({
        severity: 'warning',
        code: 'duplicate-tool-name',
        pointer: `/tools/${ti}/name`,
        message: `tool name "${t.name}" also used by /tools/${toolNames.get(t.name)}; Letta keeps one tool per name and organization, so one will replace the other on import`,
      });
    } else toolNames.set(t.name, ti);
  });
  return out;
}

/** JSON Pointer of the first object carrying this id (only used to word an error). */
function firstPointerOf(doc: AgentFileV2, id: string): string {
  const fields = ['agents', 'blocks', 'tools', 'groups', 'files', 'sources', 'mcp_servers', 'skills'];
  for (const f of fields) {
    const i = arr(doc[f]).findIndex((x) => isObj(x) && x.id === id);
    if (i >= 0) return `/${f}/${i}`;
  }
  const agents = arr(doc.agents);
  for (let ai = 0; ai < agents.length; ai++) {
    const mi = arr(agents[ai]?.messages).findIndex((m) => isObj(m) && m.id === id);
    if (mi >= 0) return `/agents/${ai}/messages/${mi}`;
  }
  return '?';
}

/** Tool call ids a message opens and closes, in any of Letta's message shapes. */
function toolCallIds(m: Record<string, any>): { calls: string[]; returns: string[] } {
  const calls: string[] = [];
  const returns: string[] = [];
  for (const c of arr(m.tool_calls)) if (isObj(c) && str(c.id)) calls.push(c.id);
  for (const part of arr(m.content)) {
    if (!isObj(part)) continue;
    if (part.type === 'tool_call' && str(part.id)) calls.push(part.id);
    if (part.type === 'tool_return' && str(part.tool_call_id)) returns.push(part.tool_call_id);
  }
  if (m.role === 'tool' && str(m.tool_call_id)) returns.push(m.tool_call_id);
  for (const r of arr(m.tool_returns)) if (isObj(r) && str(r.tool_call_id)) returns.push(r.tool_call_id);
  return { calls: [...new Set(calls)], returns: [...new Set(returns)] };
}

function checkToolPairs(inContext: { pointer: string; msg: Record<string, any> }[], owner: string, out: Finding[]): void {
  const open = new Map<string, { pointer: string; approval: boolean }>();
  for (const { pointer, msg } of inContext) {
    const { calls, returns } = toolCallIds(msg);
    for (const id of returns) {
      if (open.has(id)) open.delete(id);
      else {
        out.push({
          severity: 'error',
          code: 'orphaned-tool-return',
          pointer,
          message: `${owner}: in-context message "${msg.id}" returns tool call "${id}", but no earlier in-context message makes that call (an orphaned tool return breaks the agent in Letta)`,
        });
      }
    }
    for (const id of calls) open.set(id, { pointer, approval: msg.role === 'approval' });
  }
  for (const [id, { pointer, approval }] of open) {
    // A call on an approval request still open at the end awaits a human decision: a normal state.
    if (approval) continue;
    out.push({
      severity: 'error',
      code: 'orphaned-tool-call',
      pointer,
      message: `${owner}: in-context tool call "${id}" has no tool return in the in-context messages (an orphaned tool call breaks the agent in Letta)`,
    });
  }
}

export function checkV1References(doc: AgentFileV1): Finding[] {
  const out: Finding[] = [];
  if (!isObj(doc)) return out;
  const messages = arr(doc.messages);
  const seen = new Set<number>();
  const inContext: { pointer: string; msg: Record<string, any> }[] = [];
  arr(doc.in_context_message_indices).forEach((ix, i) => {
    const p = `/in_context_message_indices/${i}`;
    if (typeof ix !== 'number' || !Number.isInteger(ix)) return;
    if (ix < 0 || ix >= messages.length) {
      out.push({ severity: 'error', code: 'dangling-reference', pointer: p, message: `in-context index ${ix} is outside the ${messages.length} messages (dangling reference)` });
      return;
    }
    if (seen.has(ix)) out.push({ severity: 'error', code: 'duplicate-reference', pointer: p, message: `in-context index ${ix} is listed twice` });
    seen.add(ix);
    if (isObj(messages[ix])) inContext.push({ pointer: `/messages/${ix}`, msg: messages[ix] });
  });
  const labels = new Map<string, number>();
  arr(doc.core_memory).forEach((b, i) => {
    if (!isObj(b) || !str(b.label)) return;
    if (labels.has(b.label))
      out.push({
        severity: 'error',
        code: 'duplicate-block-label',
        pointer: `/core_memory/${i}/label`,
        message: `two memory blocks are labelled "${b.label}" (also /core_memory/${labels.get(b.label)}); Letta allows one block per label per agent`,
      });
    else labels.set(b.label, i);
  });
  // The in-context order is the order of the index list (Letta's v1 import walks it as given; see upgrade.ts).
  checkToolPairs(inContext, `agent "${String(doc.name ?? '')}"`, out);
  const toolNames = new Map<string, number>();
  arr(doc.tools).forEach((t, i) => {
    if (!isObj(t) || !str(t.name)) return;
    if (toolNames.has(t.name))
      out.push({ severity: 'warning', code: 'duplicate-tool-name', pointer: `/tools/${i}/name`, message: `tool name "${t.name}" also used by /tools/${toolNames.get(t.name)}` });
    else toolNames.set(t.name, i);
  });
  return out;
}

export type { Json };
