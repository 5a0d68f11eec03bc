/**
 * pgvector values as they travel through both backends: text '[1,2,3]' (no driver on either
 * side knows the `vector` type, so queries return that text and parameters take it).
 */
import { AgentVaultError } from '../core/errors';

/** '[1,2.5,-3]' for a parameter bound to a vector column. */
export function toVectorLiteral(values: ArrayLike<number>): string {
  const parts: string[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new AgentVaultError('vector-bad-value', `Vector element ${i} is ${String(v)}; pgvector accepts only finite numbers.`);
    }
    parts[i] = String(v);
  }
  return `[${parts.join(',')}]`;
}

/** Parses the text form of a vector ('[1,2,3]') into numbers; null stays null. */
export function parseVectorText(text: string | null, where = 'vector value'): number[] | null {
  if (text === null) return null;
  const t = text.trim();
  if (!t.startsWith('[') || !t.endsWith(']')) {
    throw new AgentVaultError('vector-bad-text', `The ${where} is not a pgvector text value ('[…]'): ${t.slice(0, 40)}`);
  }
  const body = t.slice(1, -1).trim();
  if (body === '') return [];
  return body.split(',').map((s, i) => {
    const n = Number(s);
    if (!Number.isFinite(n)) throw new AgentVaultError('vector-bad-text', `Element ${i} of the ${where} is not a number: ${s.trim().slice(0, 40)}`);
    return n;
  });
}
