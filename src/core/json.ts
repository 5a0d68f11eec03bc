/**
 * Canonical JSON: object keys sorted (by UTF-16 code units) at every level, undefined properties
 * left out, no white space — the same value always gives the same text. Used for content
 * comparison (diff, .af merging), fingerprint hashes (Qdrant) and MACs (the deduplicating store);
 * for the JSON values these hold (strings, integers, booleans, null, arrays, objects) it is
 * RFC 8785 (JCS).
 */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

/**
 * A JSON object (not null, not an array). `T` narrows further where the caller knows the shape;
 * the default keeps the values `unknown`.
 */
export function isObj<T extends object = Record<string, unknown>>(v: unknown): v is T {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
