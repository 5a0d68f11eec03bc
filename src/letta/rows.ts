/**
 * Rows of the restore's large tables, encoded for COPY straight from the archive's bytes (see
 * ./copy.ts): messages (cut out of an agent's .af by src/format/af-stream.ts) in text format, and
 * archival passages (JSON lines + vector rows of src/format/passage-stream.ts) in binary format,
 * with their passage tags in text format. Only the fields that need a decision are decoded (ids,
 * group and approval references, timestamps of passages); JSON columns pass through as their
 * exact text.
 */
import { AgentVaultError } from '../core/errors';
import { ObjectFieldScanner, decodeString, hasEscapes } from '../format/json-scan';
import { CopyBinary, CopyText, type TimestampReader } from './copy';
import { newId } from './sql';

function invalid(where: string, message: string, pointer?: string): AgentVaultError {
  return new AgentVaultError('restore-invalid', `${where}: ${message}`, { location: { file: where, pointer }, kind: 'failed' });
}

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
  if (!sc.scan(b, s, e)) throw invalid(where, `agent "${agentId}": messages[${index}] is not a JSON object`, pointer);
  const id = sc.string(b, 0);
  if (id === null) throw invalid(where, `agent "${agentId}": messages[${index}] has no string "id"`, `${pointer}/id`);
  if (sc.starts[1] < 0 || b[sc.starts[1]] !== 0x22) throw invalid(where, `agent "${agentId}": message "${id}" has no string "role"`, `${pointer}/role`);
  const n = stats.ids.size;
  stats.ids.add(id);
  if (stats.ids.size === n) throw invalid(where, `agent "${agentId}": message id "${id}" occurs twice`, `${pointer}/id`);
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
    this.tail = Buffer.from(`\t${esc(ctx.agentId)}\tf\t${esc(ctx.userId)}\t${esc(ctx.userId)}\t${esc(ctx.organizationId)}\n`, 'utf8');
  }

  /** Appends the row of the message b[s, e) (checked before: an object with string id and role). */
  add(b: Buffer, s: number, e: number): void {
    const { sc, xs, out, ctx } = this;
    const index = this.index++;
    if (!sc.scan(b, s, e)) throw invalid(ctx.where, `messages[${index}] is not a JSON object`, `messages/${index}`);
    const fileId = sc.string(b, M.id);
    if (fileId === null) throw invalid(ctx.where, `messages[${index}] has no string "id"`, `messages/${index}/id`);
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

/** COPY text escapes for a constant. */
function esc(s: string): string {
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

// ---------------------------------------------------------------------------------------------
// archival passages and their tags

const P_KEYS = ['id', 'text', 'embedding_config', 'metadata_', 'created_at', 'updated_at', 'tags', 'passage_tags', 'embedding'] as const;
const P = Object.fromEntries(P_KEYS.map((k, i) => [k, i])) as Record<(typeof P_KEYS)[number], number>;

/** The columns a passage row has, in COPY order. */
export const PASSAGE_COPY_COLUMNS = ['id', 'text', 'embedding_config', 'metadata_', 'embedding', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id', 'archive_id', 'tags'] as const;
export const PASSAGE_COPY_KINDS = ['text', 'text', 'json', 'json', 'vector', 'timestamptz', 'timestamptz', 'bool', 'text', 'text', 'text', 'text', 'json'] as const;
export const PASSAGE_TAG_COPY_COLUMNS = ['id', 'tag', 'passage_id', 'archive_id', 'created_at', 'updated_at', 'is_deleted', '_created_by_id', '_last_updated_by_id', 'organization_id'] as const;

const EMPTY_OBJECT = Buffer.from('{}');
const EMPTY = Buffer.alloc(0);

export interface PassageAgentContext {
  archiveId: string;
  keepIds: boolean;
  userId: string;
  organizationId: string;
  /** the embedding column's dimension (vectors are zero-padded to it), null: unconstrained */
  padTo: number | null;
  /** now() of the transaction, microseconds since 1970 */
  nowMicros: number;
  where: string;
}

export class PassageRows {
  private readonly sc = new ObjectFieldScanner(P_KEYS);
  private ctx!: PassageAgentContext;
  private constants!: { user: Buffer; org: Buffer; archive: Buffer; tagTail: Buffer };
  private line = 0;

  constructor(
    readonly out: CopyBinary,
    readonly tags: CopyText,
    private readonly timestamps: TimestampReader,
  ) {}

  beginAgent(ctx: PassageAgentContext): void {
    this.ctx = ctx;
    this.line = 0;
    this.constants = {
      user: Buffer.from(ctx.userId, 'utf8'),
      org: Buffer.from(ctx.organizationId, 'utf8'),
      archive: Buffer.from(ctx.archiveId, 'utf8'),
      tagTail: Buffer.from(`\t${esc(ctx.archiveId)}\tnow\tnow\tf\t${esc(ctx.userId)}\t${esc(ctx.userId)}\t${esc(ctx.organizationId)}\n`, 'utf8'),
    };
  }

  /**
   * Appends the row of the passage line b[s, e), with its embedding v[vs, ve) (little-endian
   * float32; v null: none), and rows for its tags.
   */
  async add(b: Buffer, s: number, e: number, v: Buffer | null, vs: number, ve: number): Promise<void> {
    const { sc, out, ctx, constants: c } = this;
    const line = ++this.line;
    if (!sc.scan(b, s, e)) throw invalid(ctx.where, `line ${line} is not a JSON object`);
    const created = sc.string(b, P.created_at);
    const updated = sc.string(b, P.updated_at);
    const createdUs = created === null ? ctx.nowMicros : await this.timestamps.micros(created);
    const updatedUs = updated === null ? ctx.nowMicros : await this.timestamps.micros(updated);
    const orig = ctx.keepIds ? sc.string(b, P.id) : null;
    const id = orig ?? newId('passage');
    out.beginRow(13);
    out.str(id);
    // text: NOT NULL, '' when missing
    const ts = sc.starts[P.text];
    if (ts >= 0 && b[ts] === 0x22) {
      const te = sc.ends[P.text];
      if (hasEscapes(b, ts, te)) out.str(decodeString(b, ts, te));
      else out.bytes(b, ts + 1, te - 1);
    } else out.constant(EMPTY);
    if (sc.isNull(b, P.embedding_config)) out.nul();
    else out.bytes(b, sc.starts[P.embedding_config], sc.ends[P.embedding_config]);
    if (sc.isNull(b, P.metadata_)) out.constant(EMPTY_OBJECT);
    else out.bytes(b, sc.starts[P.metadata_], sc.ends[P.metadata_]);
    if (v === null || (sc.has(P.embedding) && sc.isNull(b, P.embedding))) out.nul();
    else out.vector(v, vs, ve, ctx.padTo);
    out.timestamp(createdUs);
    out.timestamp(updatedUs);
    out.bool(false);
    out.constant(c.user);
    out.constant(c.user);
    out.constant(c.org);
    out.constant(c.archive);
    if (sc.isNull(b, P.tags)) out.nul();
    else out.bytes(b, sc.starts[P.tags], sc.ends[P.tags]);
    // tags: passage_tags (the tag rows at export), else the tags column
    const k = !sc.isNull(b, P.passage_tags) && b[sc.starts[P.passage_tags]] === 0x5b ? P.passage_tags : !sc.isNull(b, P.tags) && b[sc.starts[P.tags]] === 0x5b ? P.tags : -1;
    if (k >= 0 && sc.ends[k] - sc.starts[k] > 2) {
      let list: unknown;
      try {
        list = JSON.parse(b.toString('utf8', sc.starts[k], sc.ends[k]));
      } catch {
        throw invalid(ctx.where, `line ${line}: "${P_KEYS[k]}" is not valid JSON`);
      }
      const seen = new Set<string>();
      for (const t of Array.isArray(list) ? list : []) {
        if (typeof t !== 'string' || seen.has(t)) continue;
        seen.add(t);
        const tags = this.tags;
        tags.str(newId('passage-tag'));
        tags.tab();
        tags.str(t);
        tags.tab();
        tags.str(id);
        tags.raw(c.tagTail);
        tags.rows++;
      }
    }
  }
}
