/**
 * Streaming split of a plain (single-encoded) `.af` v2 document into
 *   - each message of `agents[i].messages` as a byte range of the chunk it is in (never all
 *     messages at once, and no object per message), and
 *   - the rest of the document ("outer"), with every `messages` array emptied, small enough to
 *     JSON.parse whole.
 *
 * Why not a streaming JSON parser from npm: the diff has to get through ~100 MB of messages per
 * side in well under a second on a small machine, and the messages only need to be *cut out*
 * (bytes compared, and parsed one by one only when they differ). A token-level parser
 * (stream-json, @streamparser/json) spends its time building every value; this scanner only
 * tracks nesting depth, strings (skipped with the native `indexOf`) and the two object keys it
 * needs (`agents` at the root, `messages` in an agent). Malformed JSON is left for JSON.parse of
 * the pieces to reject.
 */
import { AgentVaultError } from '../core/errors';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const OBJ = 1;
const ARR = 2;
/** Only the first few levels need their container type. */
const TRACKED_DEPTH = 6;

/** Byte classes for the hot loop: white space and commas, quotes, openers, closers, anything else. */
const C_SKIP = 0;
const C_QUOTE = 1;
const C_OPEN = 2;
const C_CLOSE = 3;
const C_OTHER = 4;
const CLS = new Uint8Array(256).fill(C_OTHER);
for (const c of [0x20, 0x09, 0x0a, 0x0d, COMMA]) CLS[c] = C_SKIP;
CLS[0x22] = C_QUOTE;
CLS[0x7b] = C_OPEN;
CLS[0x5b] = C_OPEN;
CLS[0x7d] = C_CLOSE;
CLS[0x5d] = C_CLOSE;

/** Messages cut out so far: message k is bytes starts[k]..ends[k] of bufs[k] (views: copy to keep). */
export interface SplitBatch {
  length: number;
  bufs: Buffer[];
  starts: number[];
  ends: number[];
  /** index of each message's agent in the document's `agents` list (only without `onlyAgent`) */
  agents: number[];
}

function emptyBatch(): SplitBatch {
  return { length: 0, bufs: [], starts: [], ends: [], agents: [] };
}

/** Index of the closing quote of a string whose content starts at `from`, or -1. */
function findStringEnd(b: Buffer, from: number, carriedBackslashes: number): number {
  // Most strings in an agent file are short (keys, ids, enums): a plain loop beats a native
  // indexOf call for the first bytes; long texts go to indexOf.
  const n = b.length;
  const stop = from + 24 < n ? from + 24 : n;
  let i = from;
  for (; i < stop; i++) {
    const c = b[i];
    if (c === QUOTE) {
      if (i === from && carriedBackslashes & 1) continue;
      return i;
    }
    if (c === BACKSLASH) break;
  }
  if (i === n) return -1;
  for (;;) {
    const q = b.indexOf(QUOTE, i);
    if (q < 0) return -1;
    let k = q - 1;
    let bs = 0;
    while (k >= from && b[k] === BACKSLASH) {
      bs++;
      k--;
    }
    if (k < from) bs += carriedBackslashes;
    if ((bs & 1) === 0) return q;
    i = q + 1;
  }
}

function trailingBackslashes(b: Buffer, from: number, carried: number): number {
  let k = b.length - 1;
  let n = 0;
  while (k >= from && b[k] === BACKSLASH) {
    n++;
    k--;
  }
  return k < from ? n + carried : n;
}

const EV_CHUNK_END = 0;
const EV_CARRIED_END = 1;
const EV_ARRAY_END = 2;
const EV_OPEN_STRING = 3;
const EV_NOT_OBJECT = 4;

interface HotState {
  depth: number;
  /** start of the open message in this chunk, -1 for none */
  msgStart: number;
  /** the open message began in an earlier chunk */
  carried: boolean;
  event: number;
  carriedBackslashes: number;
  what: string;
  starts: number[];
  ends: number[];
}

/**
 * Scans `b` from `i` inside a messages array (depth ≥ 4) until the chunk ends or something needs
 * the caller (see the EV_ events); messages that begin and end here go to h.starts / h.ends.
 */
function scanMessages(b: Buffer, i: number, h: HotState): number {
  const n = b.length;
  let depth = h.depth;
  let msgStart = h.msgStart;
  const carried = h.carried;
  h.event = EV_CHUNK_END;
  while (i < n) {
    const t = CLS[b[i]];
    if (t === C_SKIP || (t === C_OTHER && depth !== 4)) {
      i++;
      continue;
    }
    if (t === C_QUOTE) {
      if (depth === 4) {
        h.event = EV_NOT_OBJECT;
        h.what = 'a string';
        break;
      }
      const e = findStringEnd(b, i + 1, 0);
      if (e < 0) {
        h.event = EV_OPEN_STRING;
        h.carriedBackslashes = trailingBackslashes(b, i + 1, 0);
        break;
      }
      i = e + 1;
      continue;
    }
    if (t === C_OPEN) {
      depth++;
      if (depth === 5) {
        if (b[i] !== LBRACE) {
          h.event = EV_NOT_OBJECT;
          h.what = 'an array';
          break;
        }
        msgStart = i;
      }
    } else if (t === C_CLOSE) {
      if (depth === 5) {
        if (carried) {
          h.event = EV_CARRIED_END;
          break;
        }
        h.starts.push(msgStart);
        h.ends.push(i + 1);
        msgStart = -1;
      } else if (depth === 4) {
        h.event = EV_ARRAY_END;
        break;
      }
      depth--;
    } else {
      // a number, true, false or null where a message object should be
      h.event = EV_NOT_OBJECT;
      h.what = '';
      break;
    }
    i++;
  }
  h.depth = depth;
  h.msgStart = msgStart;
  return i;
}

export class AgentFileSplitter {
  private readonly hot: HotState = { depth: 0, msgStart: -1, carried: false, event: 0, carriedBackslashes: 0, what: '', starts: [], ends: [] };
  private readonly scratchStarts: number[] = [];
  private readonly scratchEnds: number[] = [];
  private depth = 0;
  private readonly ctype = new Uint8Array(TRACKED_DEPTH + 1);
  private readonly expectKey = [false, false, false, false];
  private key1: string | null = null;
  private key3: string | null = null;
  private agentIndex = -1;
  private inMessages = false;
  private inString = false;
  private stringIsKey = false;
  private carriedBackslashes = 0;
  /** bytes of a key string begun in an earlier chunk */
  private keyParts: Buffer[] | null = null;
  /** bytes of a message begun in an earlier chunk */
  private msgParts: Buffer[] | null = null;
  private readonly outer: Buffer[] = [];
  private outerBytes = 0;
  private finished = false;
  private batch: SplitBatch = emptyBatch();
  /** messages per agent, by index */
  readonly messageCounts: number[] = [];

  /**
   * @param where names the input in errors
   * @param onlyAgent keep only the messages of the agent at this index (others are counted, not kept)
   */
  constructor(
    private readonly where: string,
    private readonly onlyAgent: number | null = null,
  ) {}

  private fail(message: string): never {
    throw new AgentVaultError('invalid-agent-file', `${this.where}: ${message}`, { location: { file: this.where } });
  }

  private keepOuter(b: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const copy = Buffer.allocUnsafe(to - from);
    b.copy(copy, 0, from, to);
    this.outer.push(copy);
    this.outerBytes += copy.length;
  }

  private setKey(depth: number, raw: Buffer): void {
    let key: string;
    try {
      key = JSON.parse(raw.toString('utf8')) as string;
    } catch {
      this.fail('invalid JSON (a malformed object key)');
    }
    if (depth === 1) this.key1 = key;
    else this.key3 = key;
  }

  private emit(b: Buffer, start: number, end: number): void {
    const agent = this.agentIndex;
    this.messageCounts[agent]++;
    if (this.onlyAgent !== null && agent !== this.onlyAgent) return;
    const batch = this.batch;
    batch.bufs.push(b);
    batch.starts.push(start);
    batch.ends.push(end);
    if (this.onlyAgent === null) batch.agents.push(agent);
    batch.length++;
  }

  /** The messages completed since the last take(). */
  take(): SplitBatch {
    const b = this.batch;
    this.batch = emptyBatch();
    return b;
  }

  /** Feeds the next chunk. Messages completed in it are kept as views into `b` (see take()). */
  push(b: Buffer): void {
    if (this.finished) throw new Error('AgentFileSplitter.push() after end()');
    const n = b.length;
    let i = 0;
    let outerFrom = this.inMessages ? -1 : 0;
    let msgStart = this.msgParts ? 0 : -1;

    if (this.inString) {
      const e = findStringEnd(b, 0, this.carriedBackslashes);
      if (e < 0) {
        this.carriedBackslashes = trailingBackslashes(b, 0, this.carriedBackslashes);
        if (this.stringIsKey) this.keyParts!.push(Buffer.from(b));
        if (msgStart >= 0) this.msgParts!.push(Buffer.from(b));
        else if (outerFrom >= 0) this.keepOuter(b, 0, n);
        return;
      }
      this.inString = false;
      if (this.stringIsKey) {
        this.keyParts!.push(b.subarray(0, e + 1));
        this.setKey(this.depth, Buffer.concat(this.keyParts!));
        this.keyParts = null;
        this.expectKey[this.depth] = false;
        this.stringIsKey = false;
      }
      i = e + 1;
    }

    let depth = this.depth;
    while (i < n) {
      if (this.inMessages) {
        // The hot loop (a plain function over locals: V8 optimises it far better than a method).
        const h = this.hot;
        const agent = this.agentIndex;
        const keep = this.onlyAgent === null || agent === this.onlyAgent;
        const batch = this.batch;
        // messages found go straight into the batch (or a scratch list for an agent not kept)
        h.starts = keep ? batch.starts : this.scratchStarts;
        h.ends = keep ? batch.ends : this.scratchEnds;
        const before = h.ends.length;
        h.depth = depth;
        h.msgStart = msgStart;
        h.carried = this.msgParts !== null && msgStart === 0;
        i = scanMessages(b, i, h);
        depth = h.depth;
        msgStart = h.msgStart;
        const found = h.ends.length - before;
        if (found) {
          this.messageCounts[agent] += found;
          if (keep) {
            for (let k = 0; k < found; k++) batch.bufs.push(b);
            if (this.onlyAgent === null) for (let k = 0; k < found; k++) batch.agents.push(agent);
            batch.length += found;
          } else {
            this.scratchStarts.length = 0;
            this.scratchEnds.length = 0;
          }
        }
        switch (h.event) {
          case EV_CARRIED_END: {
            // a message begun in an earlier chunk ends at i
            this.msgParts!.push(b.subarray(0, i + 1));
            const whole = Buffer.concat(this.msgParts!);
            this.msgParts = null;
            this.emit(whole, 0, whole.length);
            msgStart = -1;
            depth--;
            i++;
            break;
          }
          case EV_ARRAY_END:
            // the end of the messages array: the outer text resumes with this "]"
            this.inMessages = false;
            outerFrom = i;
            depth--;
            i++;
            break;
          case EV_OPEN_STRING:
            this.inString = true;
            this.stringIsKey = false;
            this.carriedBackslashes = h.carriedBackslashes;
            i = n;
            break;
          case EV_NOT_OBJECT:
            this.fail(`messages of agent ${agent} must be objects${h.what ? ` (found ${h.what})` : ''}`);
          // falls through (fail never returns)
          default:
            break;
        }
        continue;
      }
      const c = b[i];
      if (c === QUOTE) {
        const isKey = (depth === 1 || depth === 3) && this.expectKey[depth];
        const e = findStringEnd(b, i + 1, 0);
        if (e < 0) {
          this.inString = true;
          this.stringIsKey = isKey;
          this.carriedBackslashes = trailingBackslashes(b, i + 1, 0);
          if (isKey) this.keyParts = [Buffer.from(b.subarray(i))];
          break;
        }
        if (isKey) {
          this.setKey(depth, b.subarray(i, e + 1));
          this.expectKey[depth] = false;
        }
        i = e + 1;
        continue;
      }
      if (c === LBRACE || c === LBRACKET) {
        depth++;
        if (depth <= TRACKED_DEPTH) this.ctype[depth] = c === LBRACE ? OBJ : ARR;
        if (c === LBRACE && (depth === 1 || depth === 3)) this.expectKey[depth] = true;
        if (depth === 3 && c === LBRACE && this.key1 === 'agents' && this.ctype[2] === ARR && this.ctype[1] === OBJ) {
          this.agentIndex++;
          this.key3 = null;
          this.messageCounts[this.agentIndex] = 0;
        } else if (
          depth === 4 &&
          c === LBRACKET &&
          this.key1 === 'agents' &&
          this.key3 === 'messages' &&
          this.ctype[3] === OBJ &&
          this.ctype[2] === ARR &&
          this.agentIndex >= 0 &&
          !this.expectKey[3]
        ) {
          // entering agents[k].messages: the outer text keeps "[" and resumes at the matching "]"
          this.inMessages = true;
          this.keepOuter(b, outerFrom, i + 1);
          outerFrom = -1;
        }
      } else if (c === RBRACE || c === RBRACKET) {
        depth--;
        if (depth < 0) this.fail('invalid JSON (unbalanced brackets)');
      } else if (c === COMMA) {
        if ((depth === 1 || depth === 3) && this.ctype[depth] === OBJ) this.expectKey[depth] = true;
      }
      i++;
    }
    this.depth = depth;
    if (msgStart >= 0) {
      // a message still open at the end of the chunk: keep its bytes so far
      if (this.msgParts) this.msgParts.push(Buffer.from(b));
      else this.msgParts = [Buffer.from(b.subarray(msgStart))];
    }
    if (outerFrom >= 0) this.keepOuter(b, outerFrom, n);
  }

  /** The document without message contents (JSON text). Throws if the input ended early. */
  end(): Buffer {
    this.finished = true;
    if (this.depth !== 0 || this.inString || this.msgParts) this.fail('invalid JSON (the document ends early: truncated?)');
    return Buffer.concat(this.outer, this.outerBytes);
  }
}
