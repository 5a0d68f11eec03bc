/**
 * Value normalisation for the semantic diff: what counts as "the same" across exporters.
 *
 * Different Letta versions (and v1 → v2 upgrades) write the same state differently: a field left
 * out, `null`, `[]` and `{}` all mean "nothing here"; key order differs; a message's content may
 * be a bare string or a list of text parts. Everything is compared after `normalize`, which drops
 * such empty fields and sorts object keys, so only real differences remain.
 */
import { canonicalJson } from '../core/json';

/** null, undefined, [] and {}: "nothing here" in every Letta export. */
export function isAbsent(v: unknown): boolean {
  if (v === null || v === undefined) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/**
 * The value with object fields that are absent (see isAbsent) removed, recursively. Array
 * elements are kept as they are (a null inside a list is data). Returns undefined for an absent
 * value.
 */
export function normalize(v: unknown): unknown {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) return v.length === 0 ? undefined : v.map((x) => (x === null || x === undefined ? null : (normalize(x) ?? emptyOf(x))));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const n = normalize((v as Record<string, unknown>)[k]);
      if (n !== undefined) out[k] = n;
    }
    return Object.keys(out).length === 0 ? undefined : out;
  }
  return v;
}

function emptyOf(x: unknown): unknown {
  return Array.isArray(x) ? [] : typeof x === 'object' && x !== null ? {} : null;
}

/**
 * Stable JSON text of the normalised value ('' for an absent one). normalize() rebuilds objects
 * with their keys inserted in sorted order, so the native JSON.stringify of the result is stable
 * (V8 lists integer-like keys first, in numeric order, on both sides alike).
 */
export function canonical(v: unknown): string {
  const n = normalize(v);
  return n === undefined ? '' : JSON.stringify(n);
}

/** JSON.stringify with sorted object keys (src/core/json.ts). */
export const stableStringify = canonicalJson;

export function sameValue(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/**
 * A short fingerprint (64 bits, as 16 hex digits) of text or bytes, for change detection only:
 * it tells whether two versions of one item differ, never whether two items are the same item
 * (ids do that). Computed in JS (two 32-bit multiply-xorshift lanes over the UTF-16 code units or
 * bytes): for the small inputs here a native crypto hash costs more in call overhead than it
 * saves (measured: ~5 µs per call for md5 vs ~1 µs for a 1 kB message).
 */
export function fingerprint(data: string | Uint8Array): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  const n = data.length;
  if (typeof data === 'string') {
    for (let i = 0; i < n; i++) {
      const c = data.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
  } else {
    for (let i = 0; i < n; i++) {
      const c = data[i];
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h1 >>> 0).toString(16).padStart(8, '0') + (h2 >>> 0).toString(16).padStart(8, '0') + n.toString(36);
}

export interface ValueChange {
  /** JSON Pointer (RFC 6901) below the compared value; '' for the value itself. */
  path: string;
  /** 'added' (absent in A), 'removed' (absent in B) or 'changed'. */
  kind: 'added' | 'removed' | 'changed';
  a: unknown;
  b: unknown;
}

const ptr = (base: string, key: string | number): string => `${base}/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`;

/**
 * Where two JSON values differ, as a list of leaf changes with JSON Pointers. Absent fields are
 * normalised first (null ≡ missing ≡ [] ≡ {}). Objects are compared key by key; arrays of
 * objects of equal length element by element; any other differing array is one change.
 */
export function valueChanges(a: unknown, b: unknown, base = ''): ValueChange[] {
  return walk(normalize(a), normalize(b), base);
}

function walk(a: unknown, b: unknown, at: string): ValueChange[] {
  if (a === undefined && b === undefined) return [];
  if (a === undefined) return [{ path: at, kind: 'added', a: null, b }];
  if (b === undefined) return [{ path: at, kind: 'removed', a, b: null }];
  const ao = typeof a === 'object' && a !== null;
  const bo = typeof b === 'object' && b !== null;
  if (ao && bo && !Array.isArray(a) && !Array.isArray(b)) {
    const out: ValueChange[] = [];
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    for (const k of keys) out.push(...walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], ptr(at, k)));
    return out;
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x) => typeof x === 'object' && x !== null)) {
    const out: ValueChange[] = [];
    for (let i = 0; i < a.length; i++) out.push(...walk(a[i] ?? undefined, b[i] ?? undefined, ptr(at, i)));
    return out;
  }
  return stableStringify(a) === stableStringify(b) ? [] : [{ path: at, kind: 'changed', a, b }];
}

/** A one-line, length-capped rendering of a value for reports. */
export function brief(v: unknown, max = 80): string {
  if (v === undefined || v === null) return 'null';
  const s = typeof v === 'string' ? JSON.stringify(v) : stableStringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/**
 * A copy of the first `max` characters of a string that does not keep the original alive
 * (V8 slices share their parent's memory).
 */
export function preview(text: string, max = 60): string {
  let out = '';
  let space = false;
  for (let i = 0; i < text.length && out.length < max; i++) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) space = out.length > 0;
    else {
      if (space) out += ' ';
      space = false;
      out += text[i];
    }
  }
  // built char by char: a flat string that does not keep `text` alive
  return out.length >= max ? `${out.slice(0, max - 1)}…` : out;
}
