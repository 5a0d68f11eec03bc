/**
 * Letta's `messages` table: row → .af message (export, streamed by ../export/agent.ts), the check
 * of a source's messages (before the restore's transaction), .af message → row (restore: text
 * COPY rows encoded straight from the archive's bytes — messages cut out of an agent's .af by
 * src/format/af-stream.ts; only ids, group and approval references are decoded, JSON columns pass
 * through as their exact text — in batches streamed from the source).
 */
import type { JsonObject } from '../../format/types';
import { describeWriteError, newId } from '../sql';
import { ObjectFieldScanner, decodeString, hasEscapes } from '../../format/json-scan';
import { COPY_BATCH_BYTES, CopyPump, copySql, CopyText, copyTextEscape } from '../copy';
import { compileSystemMessage, type InitialMessageAgent } from '../initial-message';
import { AV_EXT } from '../ext';
import { restoreInvalid, strs, tableWriter, type Obj } from './common';
import type { FileIdLookup } from './groups';

export function messageJson(m: Obj, fileId: string, agentFileId: string, ids: FileIdLookup, approvalFileId: string | null): JsonObject {
  let content = m.content;
  if ((content === null || content === undefined) && typeof m.text === 'string') content = [{ type: 'text', text: m.text }];
  const ext: JsonObject = { id: m.id };
  if (m.updated_at) ext.updated_at = m.updated_at;
  if (m.is_err !== null && m.is_err !== undefined) ext.is_err = m.is_err;
  if (typeof m.text === 'string' && m.content !== null && m.content !== undefined) ext.text = m.text;
  return {
    type: 'message',
    role: m.role,
    content: content ?? [],
    name: m.name,
    otid: m.otid,
    sender_id: m.sender_id,
    batch_item_id: m.batch_item_id,
    group_id: m.group_id ? (ids.get(m.group_id) ?? m.group_id) : null,
    id: fileId,
    model: m.model,
    agent_id: agentFileId,
    tool_calls: Array.isArray(m.tool_calls) && m.tool_calls.length ? m.tool_calls : null,
    tool_call_id: m.tool_call_id,
    tool_returns: m.tool_returns,
    created_at: m.created_at,
    approve: m.approve,
    approval_request_id: approvalFileId ?? m.approval_request_id,
    denial_reason: m.denial_reason,
    approvals: m.approvals,
    [AV_EXT]: ext,
  };
}

// ---------------------------------------------------------------------------------------------
// the export

export const messagesWriter = tableWriter(['messages'], async (ctx) => {
  const { tx, model, A, restored, org, user, opts, rows, step, msgMaps, plan, base, ins } = ctx;
  // messages, agent by agent, in file order (sequence ids are assigned in that order), streamed
  // from the source into COPY batches (one batch loads while the next is built)
  await step('messages');
  const groupFileIds = new Set(model.groups.keys());
  const msgPump = new CopyPump(tx, copySql('messages', MESSAGE_COPY_COLUMNS, false), 'messages', (k) => opts.onProgress?.({ step: 'messages', rows: k }));
  const msgOut = new CopyText();
  const msgRows = new MessageRows(msgOut);
  const keptIds: Array<{ id: string; message_ids: string }> = [];
  const approvalFixes: Array<{ id: string; target: string }> = [];
  const flushMessages = async () => {
    const n = msgOut.rows;
    await msgPump.send(msgOut.take(), n);
  };
  for (const a of restored) {
    const map = msgMaps.get(a.fileId)!;
    const keep = A.keepIds.has(a.fileId);
    msgRows.beginAgent({
      agentId: A.agents.get(a.fileId)!,
      keepIds: keep,
      refs: a.refs,
      approvalRefs: a.approvalRefs,
      targets: map,
      group: (gid) => (groupFileIds.has(gid) ? (A.groups.get(gid) ?? null) : model.dbIds.has(gid) ? null : gid),
      userId: user,
      organizationId: org,
      where: `${model.path ?? 'agent file'} (agent "${a.fileId}")`,
    });
    for await (const batch of model.messages(a)) {
      for (let k = 0; k < batch.length; k++) {
        msgRows.add(batch.bufs[k], batch.starts[k], batch.ends[k]);
        if (msgOut.size >= COPY_BATCH_BYTES) await flushMessages();
      }
    }
    if (keep) keptIds.push({ id: A.agents.get(a.fileId)!, message_ids: JSON.stringify(a.inContext.map((m) => map.get(m)!)) });
    for (const p of msgRows.pending.splice(0)) {
      const t = map.get(p.ref);
      if (t !== undefined) approvalFixes.push({ id: p.id, target: t });
    }
  }
  if (msgOut.size) await flushMessages();
  await msgPump.wait();
  rows.messages = msgPump.total;
  try {
    // in-context ids learned while writing, and approvals that named a later message
    if (keptIds.length) {
      await tx.query(`UPDATE agents a SET message_ids = x.ids::json FROM unnest($1::text[], $2::text[]) AS x(id, ids) WHERE a.id = x.id`, [
        keptIds.map((k) => k.id),
        keptIds.map((k) => k.message_ids),
      ]);
    }
    if (approvalFixes.length) {
      await tx.query(`UPDATE messages m SET approval_request_id = x.target FROM unnest($1::text[], $2::text[]) AS x(id, target) WHERE m.id = x.id`, [
        approvalFixes.map((p) => p.id),
        approvalFixes.map((p) => p.target),
      ]);
    }
  } catch (e) {
    throw describeWriteError(e, 'messages');
  }
  // agents of an agent file without any in-context message get the system message Letta's
  // create_agent writes (the plan says which: adds_system_message)
  const initial = restored.filter((a) => plan.agents.find((p) => p.file_id === a.fileId)?.adds_system_message);
  if (initial.length) {
    const at = new Date();
    const sysRows = initial.map((a) => {
      const o = a.obj;
      const agentId = A.agents.get(a.fileId)!;
      const blocks = [...new Set(strs(o.block_ids))]
        .map((bf) => model.blocks.get(bf)?.obj)
        .filter((b): b is Obj => !!b)
        .map((b) => ({ label: b.label ?? null, value: b.value ?? null, description: b.description ?? null, limit: b.limit ?? null, read_only: b.read_only ?? null }));
      const agent = { id: agentId, system: o.system ?? null, agent_type: o.agent_type ?? null, timezone: o.timezone ?? null, llm_config: (o.llm_config as InitialMessageAgent['llm_config']) ?? null };
      const text = compileSystemMessage(agent, blocks, at, { messages: a.messageCount, passages: a.passages });
      return {
        id: newId('message'),
        agent_id: agentId,
        role: 'system',
        content: [{ type: 'text', text }],
        model: agent.llm_config?.model ?? null,
        tool_calls: [],
        created_at: at.toISOString(),
        updated_at: at.toISOString(),
        ...base,
      };
    });
    await ins('messages', ['id', 'agent_id', 'role', 'content', 'model', 'tool_calls', 'created_at', 'updated_at', 'is_deleted', 'organization_id', '_created_by_id', '_last_updated_by_id'], sysRows);
    try {
      await tx.query(`UPDATE agents a SET message_ids = json_build_array(x.mid) FROM unnest($1::text[], $2::text[]) AS x(id, mid) WHERE a.id = x.id`, [
        sysRows.map((r) => r.agent_id),
        sysRows.map((r) => r.id),
      ]);
    } catch (e) {
      throw describeWriteError(e, 'messages');
    }
  }
});

// ---------------------------------------------------------------------------------------------
// checking messages before the restore (the pass that also verifies checksums)

const CHECK_KEYS = ['id', 'role', 'approval_request_id'] as const;

/** What the check of an agent's messages records (before the transaction). */
export interface MessageStats {
  count: number;
  /** every message id (for duplicates and references; dropped once the agent is checked) */
  ids: Set<string>;
  /** message ids named by approval_request_id */
  approvalRefs: Set<string>;
}

export function newMessageStats(): MessageStats {
  return { count: 0, ids: new Set(), approvalRefs: new Set() };
}

const checkScanner = new ObjectFieldScanner(CHECK_KEYS);

/** Checks one message (raw JSON at b[s, e)): an object with a string id (unique) and role. */
export function checkMessage(b: Buffer, s: number, e: number, stats: MessageStats, where: string, agentId: string): void {
  const index = stats.count++;
  const sc = checkScanner;
  const pointer = `messages/${index}`;
  if (!sc.scan(b, s, e)) throw restoreInvalid(where, `agent "${agentId}": messages[${index}] is not a JSON object`, pointer);
  const id = sc.string(b, 0);
  if (id === null) throw restoreInvalid(where, `agent "${agentId}": messages[${index}] has no string "id"`, `${pointer}/id`);
  if (sc.starts[1] < 0 || b[sc.starts[1]] !== 0x22) throw restoreInvalid(where, `agent "${agentId}": message "${id}" has no string "role"`, `${pointer}/role`);
  const n = stats.ids.size;
  stats.ids.add(id);
  if (stats.ids.size === n) throw restoreInvalid(where, `agent "${agentId}": message id "${id}" occurs twice`, `${pointer}/id`);
  if (!sc.isNull(b, 2)) {
    const ref = sc.string(b, 2);
    if (ref !== null) stats.approvalRefs.add(ref);
  }
}

// ---------------------------------------------------------------------------------------------
// messages

const MSG_KEYS = [
  'id',
  'role',
  'content',
  'name',
  'model',
  'tool_calls',
  'tool_call_id',
  'created_at',
  'otid',
  'tool_returns',
  'group_id',
  'sender_id',
  'batch_item_id',
  'approve',
  'approval_request_id',
  'denial_reason',
  'approvals',
  'agent_vault',
] as const;
const M = Object.fromEntries(MSG_KEYS.map((k, i) => [k, i])) as Record<(typeof MSG_KEYS)[number], number>;
const EXT_KEYS = ['id', 'updated_at', 'is_err', 'text'] as const;
const X = { id: 0, updated_at: 1, is_err: 2, text: 3 };

/** The columns a message row has, in COPY order (the agent's constant columns last). */
export const MESSAGE_COPY_COLUMNS = [
  'id',
  'role',
  'text',
  'model',
  'name',
  'tool_calls',
  'tool_call_id',
  'created_at',
  'updated_at',
  'otid',
  'tool_returns',
  'group_id',
  'content',
  'sender_id',
  'batch_item_id',
  'is_err',
  'approval_request_id',
  'approve',
  'denial_reason',
  'approvals',
  'agent_id',
  'is_deleted',
  '_created_by_id',
  '_last_updated_by_id',
  'organization_id',
] as const;

const NOW = Buffer.from('now');
const EMPTY_ARRAY = Buffer.from('[]');
const TEXT_PART_HEAD = Buffer.from('[{"type":"text","text":');
const TEXT_PART_TAIL = Buffer.from('}]');

export interface MessageAgentContext {
  /** target agent id */
  agentId: string;
  /** keep the messages' original ids (agent_vault.id) */
  keepIds: boolean;
  /** message ids other rows refer to (in-context ids, approval targets): their target ids are recorded */
  refs: Set<string>;
  /** approval targets that are messages of this agent */
  approvalRefs: Set<string>;
  /** target ids already decided (file id → target id) */
  targets: Map<string, string>;
  /** group_id of a message → the id written (null: none) */
  group: (fileGroupId: string) => string | null;
  /** is_deleted, _created_by_id, _last_updated_by_id, organization_id */
  userId: string;
  organizationId: string;
  where: string;
}

/** message rows whose approval_request_id names a message written later: fixed after the agent */
export interface PendingApproval {
  id: string;
  ref: string;
}

export class MessageRows {
  private readonly sc = new ObjectFieldScanner(MSG_KEYS);
  private readonly xs = new ObjectFieldScanner(EXT_KEYS);
  private ctx!: MessageAgentContext;
  private tail!: Buffer;
  private index = 0;
  readonly pending: PendingApproval[] = [];

  constructor(readonly out: CopyText) {}

  beginAgent(ctx: MessageAgentContext): void {
    this.ctx = ctx;
    this.index = 0;
    this.tail = Buffer.from(`\t${copyTextEscape(ctx.agentId)}\tf\t${copyTextEscape(ctx.userId)}\t${copyTextEscape(ctx.userId)}\t${copyTextEscape(ctx.organizationId)}\n`, 'utf8');
  }

  /** Appends the row of the message b[s, e) (checked before: an object with string id and role). */
  add(b: Buffer, s: number, e: number): void {
    const { sc, xs, out, ctx } = this;
    const index = this.index++;
    if (!sc.scan(b, s, e)) throw restoreInvalid(ctx.where, `messages[${index}] is not a JSON object`, `messages/${index}`);
    const fileId = sc.string(b, M.id);
    if (fileId === null) throw restoreInvalid(ctx.where, `messages[${index}] has no string "id"`, `messages/${index}/id`);
    const hasExt = sc.has(M.agent_vault) && b[sc.starts[M.agent_vault]] === 0x7b && xs.scan(b, sc.starts[M.agent_vault], sc.ends[M.agent_vault]);
    let target = ctx.targets.get(fileId);
    if (target === undefined) {
      const orig = ctx.keepIds && hasExt ? xs.string(b, X.id) : null;
      target = orig ?? newId('message');
      if (ctx.refs.has(fileId)) ctx.targets.set(fileId, target);
    }
    out.str(target);
    out.tab();
    this.text(b, sc, M.role);
    out.tab();
    if (hasExt) this.text(b, xs, X.text);
    else out.nul();
    out.tab();
    this.text(b, sc, M.model);
    out.tab();
    this.text(b, sc, M.name);
    out.tab();
    // tool_calls: NOT NULL; a list or []
    if (sc.has(M.tool_calls) && b[sc.starts[M.tool_calls]] === 0x5b) out.bytes(b, sc.starts[M.tool_calls], sc.ends[M.tool_calls]);
    else out.raw(EMPTY_ARRAY);
    out.tab();
    this.text(b, sc, M.tool_call_id);
    out.tab();
    if (sc.isNull(b, M.created_at)) out.raw(NOW);
    else this.text(b, sc, M.created_at);
    out.tab();
    if (!hasExt || xs.isNull(b, X.updated_at)) out.raw(NOW);
    else this.text(b, xs, X.updated_at);
    out.tab();
    this.text(b, sc, M.otid);
    out.tab();
    this.json(b, sc, M.tool_returns);
    out.tab();
    if (sc.isNull(b, M.group_id)) out.nul();
    else {
      const g = sc.string(b, M.group_id);
      const mapped = g === null ? null : ctx.group(g);
      if (mapped === null) out.nul();
      else out.str(mapped);
    }
    out.tab();
    // content: a bare string is one text part
    if (sc.isNull(b, M.content)) out.nul();
    else if (b[sc.starts[M.content]] === 0x22) {
      out.raw(TEXT_PART_HEAD);
      out.bytes(b, sc.starts[M.content], sc.ends[M.content]);
      out.raw(TEXT_PART_TAIL);
    } else out.bytes(b, sc.starts[M.content], sc.ends[M.content]);
    out.tab();
    this.text(b, sc, M.sender_id);
    out.tab();
    this.text(b, sc, M.batch_item_id);
    out.tab();
    if (hasExt) this.text(b, xs, X.is_err);
    else out.nul();
    out.tab();
    if (sc.isNull(b, M.approval_request_id)) out.nul();
    else {
      const ref = sc.string(b, M.approval_request_id);
      if (ref === null) out.nul();
      else {
        const t = ctx.targets.get(ref);
        if (t !== undefined) out.str(t);
        else {
          out.str(ref);
          if (ctx.approvalRefs.has(ref)) this.pending.push({ id: target, ref });
        }
      }
    }
    out.tab();
    this.text(b, sc, M.approve);
    out.tab();
    this.text(b, sc, M.denial_reason);
    out.tab();
    this.json(b, sc, M.approvals);
    out.raw(this.tail);
    out.rows++;
  }

  /** A text column from a JSON value: a string's characters, another scalar's JSON text, null → NULL. */
  private text(b: Buffer, sc: ObjectFieldScanner, k: number): void {
    const s = sc.starts[k];
    if (s < 0 || sc.isNull(b, k)) return this.out.nul();
    const e = sc.ends[k];
    if (b[s] === 0x22) {
      if (hasEscapes(b, s, e)) this.out.str(decodeString(b, s, e));
      else this.out.bytes(b, s + 1, e - 1);
    } else this.out.bytes(b, s, e);
  }

  /** A json column: the value's exact text, null → NULL. */
  private json(b: Buffer, sc: ObjectFieldScanner, k: number): void {
    if (sc.isNull(b, k)) return this.out.nul();
    this.out.bytes(b, sc.starts[k], sc.ends[k]);
  }
}
