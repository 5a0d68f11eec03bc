/**
 * The top-level fields of one JSON object held as raw bytes, found without parsing the object:
 * for each wanted key, the byte range of its value. The restore passes the values of most fields
 * straight through (JSON columns as their exact text, strings as their bytes) and decodes only
 * the few it needs; messages cut out of an agent file by ./af-stream.ts and passage lines of
 * ./passage-stream.ts go through here.
 *
 * The scanner checks structure (an object, keys followed by values, balanced brackets, closed
 * strings), not the grammar inside values: a malformed number or literal is left for whoever
 * reads the value (PostgreSQL validates every json column it receives).
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index of the quote closing the string whose content starts at `from` (before `end`), or -1. */
export function stringEnd(b: Buffer, from: number, end: number): number {
  // short strings (keys, ids, enums) by hand; long texts with the native search
  const stop = from + 64 < end ? from + 64 : end;
  let i = from;
  for (; i < stop; i++) {
    const c = b[i];
    if (c === QUOTE) return i;
    if (c === BACKSLASH) i++;
  }
  if (i >= end) return -1;
  for (;;) {
    const q = b.indexOf(QUOTE, i);
    if (q < 0 || q >= end) return -1;
    let k = q - 1;
    while (k >= from && b[k] === BACKSLASH) k--;
    if (((q - 1 - k) & 1) === 0) return q;
    i = q + 1;
  }
}

/** End (exclusive) of the JSON value starting at `i`, or -1 when it does not end before `end`. */
export function valueEnd(b: Buffer, i: number, end: number): number {
  const c = b[i];
  if (c === QUOTE) {
    const q = stringEnd(b, i + 1, end);
    return q < 0 ? -1 : q + 1;
  }
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0;
    for (let k = i; k < end; k++) {
      const x = b[k];
      if (x === QUOTE) {
        const q = stringEnd(b, k + 1, end);
        if (q < 0) return -1;
        k = q;
      } else if (x === LBRACE || x === LBRACKET) depth++;
      else if (x === RBRACE || x === RBRACKET) {
        depth--;
        if (depth === 0) return k + 1;
      }
    }
    return -1;
  }
  let k = i;
  while (k < end) {
    const x = b[k];
    if (x === COMMA || x === RBRACE || x === RBRACKET || isWs(x)) break;
    k++;
  }
  return k > i ? k : -1;
}

function trailing(b: Buffer, i: number, end: number): boolean {
  while (i < end && isWs(b[i])) i++;
  return i === end;
}

export class ObjectFieldScanner {
  /** Value range of key k (index in the constructor's list) after scan(); -1 when absent. */
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  /** keys by byte length (< 64) and first byte: slot length * 256 + first byte */
  private readonly table: Array<Array<{ bytes: Buffer; index: number }> | undefined> = new Array(64 * 256);
  private readonly byName = new Map<string, number>();

  constructor(readonly keys: readonly string[]) {
    this.starts = new Int32Array(keys.length).fill(-1);
    this.ends = new Int32Array(keys.length).fill(-1);
    keys.forEach((k, index) => {
      const bytes = Buffer.from(k, 'utf8');
      this.byName.set(k, index);
      if (bytes.length === 0 || bytes.length >= 64) return; // found through byName
      const slot = bytes.length * 256 + bytes[0];
      (this.table[slot] ??= []).push({ bytes, index });
    });
  }

  private lookup(b: Buffer, ks: number, ke: number): number {
    const len = ke - ks;
    if (len === 0 || len >= 64) return this.byName.get(b.toString('utf8', ks, ke)) ?? -1;
    const list = this.table[len * 256 + b[ks]];
    if (list) {
      for (const { bytes, index } of list) {
        let k = 1;
        while (k < len && bytes[k] === b[ks + k]) k++;
        if (k === len) return index;
      }
    }
    // a key spelled with escapes ("\u0069d") means the same as its decoded text
    for (let i = ks; i < ke; i++) {
      if (b[i] === BACKSLASH) {
        try {
          return this.byName.get(JSON.parse(b.toString('utf8', ks - 1, ke + 1)) as string) ?? -1;
        } catch {
          return -1;
        }
      }
    }
    return -1;
  }

  /**
   * Finds the wanted fields of the object at b[start, end). Returns false when the bytes are not
   * one JSON object (then the ranges are unspecified).
   */
  scan(b: Buffer, start: number, end: number): boolean {
    this.starts.fill(-1);
    this.ends.fill(-1);
    let i = start;
    while (i < end && isWs(b[i])) i++;
    if (i >= end || b[i] !== LBRACE) return false;
    i++;
    while (i < end && isWs(b[i])) i++;
    if (i < end && b[i] === RBRACE) return trailing(b, i + 1, end);
    for (;;) {
      if (i >= end || b[i] !== QUOTE) return false;
      const ke = stringEnd(b, i + 1, end);
      if (ke < 0) return false;
      const index = this.lookup(b, i + 1, ke);
      i = ke + 1;
      while (i < end && isWs(b[i])) i++;
      if (i >= end || b[i] !== COLON) return false;
      i++;
      while (i < end && isWs(b[i])) i++;
      if (i >= end) return false;
      const ve = valueEnd(b, i, end);
      if (ve < 0) return false;
      if (index >= 0) {
        this.starts[index] = i;
        this.ends[index] = ve;
      }
      i = ve;
      while (i < end && isWs(b[i])) i++;
      if (i >= end) return false;
      if (b[i] === RBRACE) return trailing(b, i + 1, end);
      if (b[i] !== COMMA) return false;
      i++;
      while (i < end && isWs(b[i])) i++;
    }
  }

  has(k: number): boolean {
    return this.starts[k] >= 0;
  }

  /** The value of key k is absent or JSON null. */
  isNull(b: Buffer, k: number): boolean {
    const s = this.starts[k];
    return s < 0 || (this.ends[k] - s === 4 && b[s] === 0x6e);
  }

  /** The value of key k as a JS string when it is a JSON string (else null). */
  string(b: Buffer, k: number): string | null {
    const s = this.starts[k];
    if (s < 0 || b[s] !== QUOTE) return null;
    return decodeString(b, s, this.ends[k]);
  }
}

/** A JSON string at b[s, e) (quotes included) as a JS string. */
export function decodeString(b: Buffer, s: number, e: number): string {
  for (let i = s + 1; i < e - 1; i++) if (b[i] === BACKSLASH) return JSON.parse(b.toString('utf8', s, e)) as string;
  return b.toString('utf8', s + 1, e - 1);
}

/** Whether the JSON string at b[s, e) (quotes included) has escapes. */
export function hasEscapes(b: Buffer, s: number, e: number): boolean {
  for (let i = s + 1; i < e - 1; i++) if (b[i] === BACKSLASH) return true;
  return false;
}
