/**
 * Letta's `messages` table: row → .af message (export, streamed by ../export/agent.ts), .af
 * message → row (restore: COPY batches streamed from the source, ./../rows.ts MessageRows).
 */
import type { JsonObject } from '../../format/types';
import { describeWriteError } from '../sql';
import { COPY_BATCH_BYTES, CopyPump, copySql, CopyText } from '../copy';
import { MESSAGE_COPY_COLUMNS, MessageRows } from '../rows';
import { AV_EXT } from '../ext';
import { tableWriter, type Obj } from './common';
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
  const { tx, model, A, restored, org, user, opts, rows, step, msgMaps } = ctx;
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
      await tx.query(`UPDATE agents a SET message_ids = x.ids::json FROM unnest($1::text[], $2::text[]) AS x(id, ids) WHERE a.id = x.id`, [keptIds.map((k) => k.id), keptIds.map((k) => k.message_ids)]);
    }
    if (approvalFixes.length) {
      await tx.query(`UPDATE messages m SET approval_request_id = x.target FROM unnest($1::text[], $2::text[]) AS x(id, target) WHERE m.id = x.id`, [approvalFixes.map((p) => p.id), approvalFixes.map((p) => p.target)]);
    }
  } catch (e) {
    throw describeWriteError(e, 'messages');
  }
});
