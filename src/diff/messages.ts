/**
 * Messages: which fields matter, their fingerprint, and the comparison of two histories.
 */
import { AgentVaultError, errorMessage } from '../core/errors';
import { canonical, fingerprint, preview } from './normalize';
import { CONTENT_ID_PREFIX, lockstep, type ItemRecord, type LockstepPair } from './lockstep';
import type { MessageRef, MessageSample, MessagesDiff } from './types';

/** One message: raw JSON bytes (archives) or an object (agent files, live exports). */
/** Letta's file-local message ids (`message-<n>`), which an export renumbers. */
const FILE_LOCAL_MESSAGE_ID = /^message-\d+$/;

export interface MessageItem {
  raw?: Buffer;
  obj?: Record<string, unknown>;
}

/**
 * Messages as a source yields them, in batches. Raw (archives): message k is `bufs[k]` bytes
 * `starts[k]`..`ends[k]`, views into the stream's chunks, with no object per message on the hot
 * path; or parsed objects (agent files, live exports). Iterating a batch gives MessageItems.
 */
export class MessageBatch implements Iterable<MessageItem> {
  private constructor(
    readonly length: number,
    readonly bufs?: Buffer[],
    readonly starts?: number[],
    readonly ends?: number[],
    readonly objs?: Array<Record<string, unknown>>,
  ) {}

  static raw(bufs: Buffer[], starts: number[], ends: number[]): MessageBatch {
    return new MessageBatch(bufs.length, bufs, starts, ends);
  }

  static objects(objs: Array<Record<string, unknown>>): MessageBatch {
    return new MessageBatch(objs.length, undefined, undefined, undefined, objs);
  }

  item(i: number): MessageItem {
    return this.objs ? { obj: this.objs[i] } : { raw: this.bufs![i].subarray(this.starts![i], this.ends![i]) };
  }

  *[Symbol.iterator](): Iterator<MessageItem> {
    for (let i = 0; i < this.length; i++) yield this.item(i);
  }
}

/**
 * The fields whose change is a change of the conversation. Left out on purpose: ids that are
 * file-local or database-specific (`agent_id`, `group_id`, `otid`, `sender_id`, `batch_item_id`,
 * `step_id`, `run_id`), bookkeeping (`created_at`, `updated_at`, `created_by_id`, …), `model` (which
 * model produced it is not its content) and `type` (always "message").
 */
export const MESSAGE_FIELDS = ['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'tool_returns', 'approve', 'approval_request_id', 'denial_reason', 'approvals'] as const;

/** Content as a list of parts: a bare string is one text part (v1 and some v2 exports differ). */
function normalContent(content: unknown): unknown {
  if (typeof content === 'string') return content === '' ? undefined : [{ type: 'text', text: content }];
  return content;
}

export function messageDigest(m: Record<string, unknown>): string {
  const picked: Record<string, unknown> = {};
  for (const f of MESSAGE_FIELDS) picked[f] = f === 'content' ? normalContent(m.content) : m[f];
  return fingerprint(canonical(picked));
}

/** Text of a message for locating an edit: its text parts, then its tool calls (capped). */
export function messageText(m: Record<string, unknown>, cap = 4000): string {
  const parts: string[] = [];
  const content = m.content;
  if (typeof content === 'string') parts.push(content);
  else if (Array.isArray(content)) {
    for (const part of content) {
      if (!part || typeof part !== 'object') continue;
      const p = part as Record<string, unknown>;
      for (const k of ['text', 'reasoning', 'content']) if (typeof p[k] === 'string') parts.push(p[k] as string);
    }
  }
  if (Array.isArray(m.tool_calls)) for (const c of m.tool_calls) parts.push(JSON.stringify((c as { function?: unknown } | null)?.function ?? c));
  const t = parts.join('\n');
  return t.length > cap ? t.slice(0, cap) : t;
}

/** A short one-line text for a message: its first text, reasoning or tool call. */
export function messagePreview(m: Record<string, unknown>): string {
  const content = m.content;
  if (typeof content === 'string' && content.trim()) return preview(content);
  if (Array.isArray(content)) {
    for (const part of content) {
      if (!part || typeof part !== 'object') continue;
      const p = part as Record<string, unknown>;
      for (const k of ['text', 'reasoning', 'content']) if (typeof p[k] === 'string' && (p[k] as string).trim()) return preview(p[k] as string);
    }
  }
  if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
    const fn = (m.tool_calls[0] as { function?: { name?: unknown } } | null)?.function?.name;
    if (typeof fn === 'string') return preview(`tool call ${fn}(…)`);
  }
  if (Array.isArray(m.tool_returns) && m.tool_returns.length > 0) return preview(`tool return ${JSON.stringify(m.tool_returns[0])}`);
  return '';
}

export function parseMessage(batch: MessageBatch, i: number, position: number, where: string): ItemRecord {
  let m: Record<string, unknown>;
  if (batch.objs) m = batch.objs[i];
  else {
    try {
      m = JSON.parse(batch.bufs![i].toString('utf8', batch.starts![i], batch.ends![i])) as Record<string, unknown>;
    } catch (e) {
      throw new AgentVaultError('invalid-agent-file', `${where}: message ${position} is not valid JSON: ${errorMessage(e)}`, { location: { file: where } });
    }
  }
  if (!m || typeof m !== 'object' || Array.isArray(m)) {
    throw new AgentVaultError('invalid-agent-file', `${where}: message ${position} is not an object`, { location: { file: where } });
  }
  return {
    // a file-local id ("message-12") is no identity: an export renumbers it, so such messages are
    // matched by content and position; database ids (kept in a snapshot) are matched by id
    id: typeof m.id === 'string' && m.id !== '' && !FILE_LOCAL_MESSAGE_ID.test(m.id) ? m.id : null,
    ...(typeof m.id === 'string' && FILE_LOCAL_MESSAGE_ID.test(m.id) ? { fileId: m.id } : {}),
    digest: messageDigest(m),
    position,
    label: typeof m.role === 'string' ? m.role : null,
    preview: messagePreview(m),
    text: messageText(m),
  };
}

function ref(r: ItemRecord | null): MessageRef | null {
  return r ? { position: r.position, id: r.id, role: r.label, preview: r.preview } : null;
}

function sample(p: LockstepPair): MessageSample {
  return { a: ref(p.a), b: ref(p.b) };
}

/** Byte-identical raw messages (a range compare: no Buffer views created). */
export function sameRawRange(aBufs: Buffer[], aStarts: number[], aEnds: number[], i: number, bBufs: Buffer[], bStarts: number[], bEnds: number[], j: number): boolean {
  const as = aStarts[i];
  const ae = aEnds[i];
  const bs = bStarts[j];
  const be = bEnds[j];
  return ae - as === be - bs && aBufs[i].compare(bBufs[j], bs, be, as, ae) === 0;
}

const sameBytes = (a: MessageBatch, i: number, b: MessageBatch, j: number): boolean =>
  a.bufs !== undefined && b.bufs !== undefined && sameRawRange(a.bufs, a.starts!, a.ends!, i, b.bufs, b.starts!, b.ends!, j);

export async function compareMessages(a: AsyncIterable<MessageBatch>, b: AsyncIterable<MessageBatch>, where: { a: string; b: string }): Promise<MessagesDiff> {
  // A message without a stable id (none, or a file-local one an export renumbers) is identified by
  // its content: the n-th message with this digest on its side. Edited ones pair up by position.
  const seen = { a: new Map<string, number>(), b: new Map<string, number>() };
  const shown = new WeakMap<ItemRecord, string | null>(); // the id the report shows (the file's own)
  const r = await lockstep<MessageBatch>(a, b, {
    sameRaw: sameBytes,
    parse: (batch, i, pos, side) => {
      const rec = parseMessage(batch, i, pos, side === 'a' ? where.a : where.b);
      if (rec.id === null) {
        const n = seen[side].get(rec.digest) ?? 0;
        seen[side].set(rec.digest, n + 1);
        shown.set(rec, rec.fileId ?? null);
        rec.id = `${CONTENT_ID_PREFIX}${rec.digest}#${n}`;
      }
      delete rec.fileId;
      return rec;
    },
  });
  // the synthetic ids are not shown
  const show = (rec: ItemRecord | null): ItemRecord | null => (rec && shown.has(rec) ? { ...rec, id: shown.get(rec)! } : rec);
  const strip = (x: LockstepPair): LockstepPair => ({ ...x, a: show(x.a), b: show(x.b) });
  r.samples = { appended: r.samples.appended.map(strip), removed: r.samples.removed.map(strip), edited: r.samples.edited.map(strip) };
  if (r.firstDivergence) r.firstDivergence = strip(r.firstDivergence);
  return {
    compared: true,
    a_count: r.aCount,
    b_count: r.bCount,
    unchanged: r.unchanged,
    appended: r.appended,
    removed: r.removed,
    edited: r.edited,
    first_divergence: r.firstDivergence ? sample(r.firstDivergence) : null,
    in_context: { a_count: 0, b_count: 0, changed: false },
    samples: { appended: r.samples.appended.map(sample), removed: r.samples.removed.map(sample), edited: r.samples.edited.map(sample) },
    matched_by: r.matchedBy,
  };
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The in-context window (the agent's `in_context_message_ids`). Ids are comparable only when
 * message ids were (matched by id); otherwise only the window's size is compared.
 */
export function inContextDiff(a: string[], b: string[], matchedBy: string): MessagesDiff['in_context'] {
  // file-local ids are renumbered by an export: only the window's size is comparable then
  const local = a.some((x) => FILE_LOCAL_MESSAGE_ID.test(x)) || b.some((x) => FILE_LOCAL_MESSAGE_ID.test(x));
  return { a_count: a.length, b_count: b.length, changed: matchedBy === 'position' || local ? a.length !== b.length : !sameList(a, b) };
}

export function messagesNotCompared(aCount: number, bCount: number): MessagesDiff {
  return {
    compared: false,
    a_count: aCount,
    b_count: bCount,
    unchanged: 0,
    appended: 0,
    removed: 0,
    edited: 0,
    first_divergence: null,
    in_context: { a_count: 0, b_count: 0, changed: false },
    samples: { appended: [], removed: [], edited: [] },
    matched_by: 'none',
  };
}
