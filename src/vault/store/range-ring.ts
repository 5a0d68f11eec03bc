/**
 * One reusable buffer that a store snapshot reader (./reader.ts) reads its pack ranges into, in
 * place of a fresh buffer per range: the ranges of an entry are read in order and freed in the
 * same order (a ring: first in, first out), so the memory is allocated once per entry instead of
 * once per range (a restore reads ~80 MB of vectors; fresh 4 MiB buffers each time cost more in
 * garbage collection than in reading).
 *
 * A range may be freed only when nothing the reader handed out still points into it: the reader
 * frees a range of stored-as-is chunks after its consumer asked for the next chunk (chunks(): a
 * chunk is valid until then), and a range whose chunks were all inflated or decrypted (fresh
 * buffers) as soon as it is decoded. When the ring has no room, alloc() returns null and the
 * caller reads into a fresh buffer, as before: the ring never makes a reader wait.
 */
export interface RingSpan {
  /** the bytes of the range (a view into the ring) */
  readonly buf: Buffer;
  readonly start: number;
  readonly end: number;
  done: boolean;
}

export class RangeRing {
  private ring: Buffer | null = null;
  /** spans allocated and not yet freed, oldest first (freed ones are dropped from the front) */
  private readonly spans: RingSpan[] = [];

  constructor(readonly size: number) {}

  /** Bytes allocated and not yet freed (wrap-around waste not counted). */
  get used(): number {
    return this.spans.reduce((n, s) => n + (s.done ? 0 : s.end - s.start), 0);
  }

  /** Spans not yet dropped (for tests). */
  get live(): number {
    return this.spans.length;
  }

  /** A span of `length` bytes after the newest one, or null when the ring has no room for it. */
  alloc(length: number): RingSpan | null {
    if (length <= 0 || length > this.size) return null;
    let at: number;
    if (!this.spans.length) at = 0;
    else {
      const tail = this.spans[0].start;
      const head = this.spans[this.spans.length - 1].end;
      if (head > tail) {
        // not wrapped: free are [head, size) and [0, tail)
        if (head + length <= this.size) at = head;
        else if (length <= tail) at = 0;
        else return null;
      } else if (head + length <= tail)
        at = head; // wrapped: free is [head, tail)
      else return null;
    }
    this.ring ??= Buffer.allocUnsafe(this.size);
    const span: RingSpan = { buf: this.ring.subarray(at, at + length), start: at, end: at + length, done: false };
    this.spans.push(span);
    return span;
  }

  /** Frees the span; its bytes (and those of older spans already freed) may be reused from now on. */
  free(span: RingSpan): void {
    span.done = true;
    while (this.spans.length && this.spans[0].done) this.spans.shift();
  }
}
