/**
 * Comparison of two long ordered sequences (messages, passages) without holding either.
 *
 * Both sides are streamed together in batches. While they agree byte for byte the items are
 * neither parsed nor stored (the common case between two snapshots of one agent). Where they
 * differ, each item is parsed into a small record (id, digest of the fields that matter, a short
 * preview) and matched:
 *   1. by id with the item at the same step on the other side;
 *   2. by id with an item parked earlier on the other side; the side that had run ahead then
 *      waits, so an insertion or deletion costs a few parsed items, not the rest of the stream;
 *   3. at the end, leftovers by sequence position, when ids cannot pair them (an item without an
 *      id, or two id spaces with nothing in common, e.g. a file-local export against a database).
 * Memory is bounded by the number of differing items, each a few hundred bytes.
 */

/** Ids with this prefix name an item by its content (no stable id): leftovers pair by position. */
export const CONTENT_ID_PREFIX = 'content:';

export interface ItemRecord {
  id: string | null;
  /** fingerprint of the fields that matter */
  digest: string;
  position: number;
  /** role of a message; null for passages */
  label: string | null;
  preview: string;
  /** a file-local id that is no identity (messages: `message-<n>`), shown in reports */
  fileId?: string;
  /** extra per-kind detail kept for reports (e.g. which passage parts changed) */
  parts?: Record<string, string>;
  /**
   * The item's text (capped), to show an edit where it is: kept only until the record is paired
   * or while few records are parked (memory stays bounded).
   */
  text?: string;
}

/** Parked records beyond this many lose their text (their previews stay). */
const MAX_PARKED_WITH_TEXT = 1000;

/** A batch of items; how items are stored is up to the caller (no object per item needed). */
export interface Batch {
  readonly length: number;
}

export interface LockstepOptions<B extends Batch> {
  /** Whether item i of batch a and item j of batch b are byte-identical (cheap); false when unknown. */
  sameRaw(a: B, i: number, b: B, j: number): boolean;
  /** Parses an item into its record. */
  parse(batch: B, i: number, position: number, side: 'a' | 'b'): ItemRecord;
  /** How many samples of each kind to keep. */
  sampleLimit?: number;
  /** Called for every edited pair (not only the sampled ones). */
  onEdited?(a: ItemRecord, b: ItemRecord): void;
}

export interface LockstepPair {
  a: ItemRecord | null;
  b: ItemRecord | null;
}

export interface LockstepResult {
  aCount: number;
  bCount: number;
  unchanged: number;
  edited: number;
  appended: number;
  removed: number;
  samples: { edited: LockstepPair[]; appended: LockstepPair[]; removed: LockstepPair[] };
  firstDivergence: LockstepPair | null;
  matchedBy: 'id' | 'position' | 'id+position' | 'none';
}

interface Parked extends ItemRecord {
  step: number;
  /** what the other side had at that step */
  seenWith: ItemRecord | null;
}

const EMPTY: Batch = { length: 0 };

class Cursor<B extends Batch> {
  batch: B = EMPTY as B;
  i = 0;
  position = 0;
  done = false;
  current: Parked | null = null;

  constructor(private readonly it: AsyncIterator<B>) {}

  get has(): boolean {
    return this.i < this.batch.length;
  }

  /**
   * The next non-empty batch. A producer may reuse the memory behind a batch once it is asked
   * for the next one: every item of the previous batch has been compared or parsed by then.
   */
  async fill(): Promise<void> {
    while (this.i >= this.batch.length && !this.done) {
      this.batch = EMPTY as B;
      this.i = 0;
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.batch = r.value;
    }
  }

  advance(): void {
    this.i++;
    this.position++;
    this.current = null;
  }
}

export async function lockstep<B extends Batch>(a: AsyncIterable<B>, b: AsyncIterable<B>, opts: LockstepOptions<B>): Promise<LockstepResult> {
  const itA = a[Symbol.asyncIterator]();
  const itB = b[Symbol.asyncIterator]();
  const A = new Cursor(itA);
  const B = new Cursor(itB);
  const limit = opts.sampleLimit ?? 10;
  const res: LockstepResult = {
    aCount: 0,
    bCount: 0,
    unchanged: 0,
    edited: 0,
    appended: 0,
    removed: 0,
    samples: { edited: [], appended: [], removed: [] },
    firstDivergence: null,
    matchedBy: 'none',
  };
  const parkedA = new Map<string, Parked>();
  const parkedB = new Map<string, Parked>();
  let sameBytes = 0;
  let byId = 0;
  let byPosition = 0;
  let step = 0;
  let divergenceStep = Infinity;

  const parse = (cur: Cursor<B>, side: 'a' | 'b'): Parked => {
    if (!cur.current) {
      const rec = opts.parse(cur.batch, cur.i, cur.position, side) as Parked;
      rec.step = step;
      rec.seenWith = null;
      cur.current = rec;
    }
    return cur.current;
  };
  const park = (map: Map<string, Parked>, rec: Parked): void => {
    if (map.size >= MAX_PARKED_WITH_TEXT) rec.text = undefined;
    let key = rec.id ?? `\u0000#${rec.position}`;
    if (map.has(key)) key = `\u0000#${rec.position}`; // a duplicate id: only position can pair it
    map.set(key, rec);
  };
  const consider = (s: number, pair: LockstepPair): void => {
    if (s < divergenceStep) {
      divergenceStep = s;
      res.firstDivergence = pair;
    }
  };
  const pairUp = (ra: Parked, rb: Parked): void => {
    if (ra.digest === rb.digest) {
      res.unchanged++;
      return;
    }
    res.edited++;
    if (ra.text !== undefined && rb.text !== undefined) focusPreviews(ra, rb);
    ra.text = undefined;
    rb.text = undefined;
    opts.onEdited?.(ra, rb);
    if (res.samples.edited.length < limit) res.samples.edited.push({ a: ra, b: rb });
    consider(Math.min(ra.step, rb.step), { a: ra, b: rb });
  };

  try {
    for (;;) {
      if (!A.has) await A.fill();
      if (!B.has) await B.fill();
      const aHas = A.has;
      const bHas = B.has;
      if (!aHas && !bHas) break;
      if (aHas && bHas && opts.sameRaw(A.batch, A.i, B.batch, B.i)) {
        res.unchanged++;
        sameBytes++;
        A.advance();
        B.advance();
        continue;
      }
      step++;
      const ra = aHas ? parse(A, 'a') : null;
      const rb = bHas ? parse(B, 'b') : null;
      if (ra && rb && ra.id !== null && ra.id === rb.id) {
        byId++;
        pairUp(ra, rb);
        A.advance();
        B.advance();
        continue;
      }
      const earlierB = ra && ra.id !== null ? parkedB.get(ra.id) : undefined;
      if (ra && earlierB) {
        parkedB.delete(ra.id!);
        byId++;
        pairUp(ra, earlierB);
        A.advance();
        continue;
      }
      const earlierA = rb && rb.id !== null ? parkedA.get(rb.id) : undefined;
      if (rb && earlierA) {
        parkedA.delete(rb.id!);
        byId++;
        pairUp(earlierA, rb);
        B.advance();
        continue;
      }
      if (ra) {
        ra.seenWith = rb;
        park(parkedA, ra);
        A.advance();
      }
      if (rb) {
        rb.seenWith = ra;
        park(parkedB, rb);
        B.advance();
      }
    }
  } finally {
    // stop the producers (close their streams) whether or not we got to the end
    await Promise.allSettled([itA.return?.(), itB.return?.()]);
  }
  res.aCount = A.position;
  res.bCount = B.position;

  // 3. leftovers by position: items without ids (or identified only by their content: an edited
  // one finds no twin) always; all of them when no id ever matched
  const disjoint = sameBytes === 0 && byId === 0;
  const weak = (k: string, r: Parked) => r.id === null || k.startsWith('\u0000') || r.id.startsWith(CONTENT_ID_PREFIX);
  // content-identified leftovers first read side by side (one step) are one edited item
  const keyOfB = new Map<Parked, string>();
  for (const [k, rb] of parkedB) keyOfB.set(rb, k);
  for (const [k, ra] of [...parkedA]) {
    const rb = ra.seenWith as Parked | null | undefined;
    if (!rb || !ra.id?.startsWith(CONTENT_ID_PREFIX) || !rb.id?.startsWith(CONTENT_ID_PREFIX) || rb.seenWith !== ra) continue;
    const kb = keyOfB.get(rb);
    if (kb === undefined || !parkedB.has(kb)) continue;
    parkedA.delete(k);
    parkedB.delete(kb);
    byPosition++;
    pairUp(ra, rb);
  }
  const bByPos = new Map<number, [string, Parked]>();
  for (const [k, rb] of parkedB) if (disjoint || weak(k, rb)) bByPos.set(rb.position, [k, rb]);
  for (const [k, ra] of [...parkedA]) {
    if (!(disjoint || weak(k, ra))) continue;
    const hit = bByPos.get(ra.position);
    if (!hit) continue;
    parkedA.delete(k);
    parkedB.delete(hit[0]);
    bByPos.delete(ra.position);
    byPosition++;
    pairUp(ra, hit[1]);
  }
  for (const ra of parkedA.values()) {
    ra.text = undefined;
    res.removed++;
    if (res.samples.removed.length < limit) res.samples.removed.push({ a: ra, b: null });
    consider(ra.step, { a: ra, b: ra.seenWith });
  }
  for (const rb of parkedB.values()) {
    rb.text = undefined;
    res.appended++;
    if (res.samples.appended.length < limit) res.samples.appended.push({ a: null, b: rb });
    consider(rb.step, { a: rb.seenWith, b: rb });
  }
  res.samples.removed.sort((x, y) => x.a!.position - y.a!.position);
  res.samples.appended.sort((x, y) => x.b!.position - y.b!.position);
  res.matchedBy = byPosition > 0 ? (byId + sameBytes > 0 ? 'id+position' : 'position') : byId + sameBytes > 0 ? 'id' : 'none';
  return res;
}

/**
 * Previews of an edited pair around the first character where their texts differ (the starts of
 * two versions of a long message are usually the same and say nothing about the edit).
 */
function focusPreviews(a: ItemRecord, b: ItemRecord, width = 60): void {
  const x = a.text!;
  const y = b.text!;
  if (x === y) return; // the edit is outside the text (e.g. a tool call): keep the plain previews
  let i = 0;
  while (i < x.length && i < y.length && x.charCodeAt(i) === y.charCodeAt(i)) i++;
  if (i < 20) return;
  const from = Math.max(0, i - 20);
  const cut = (t: string): string => {
    const s = t.slice(from, from + width).replace(/\s+/g, ' ');
    return `…${s}${from + width < t.length ? '…' : ''}`;
  };
  a.preview = Buffer.from(cut(x)).toString();
  b.preview = Buffer.from(cut(y)).toString();
}
