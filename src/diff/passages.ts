/**
 * Archival passages: fingerprints (text, metadata, embedding vector) and the comparison of two
 * passage streams.
 */
import { AgentVaultError, errorMessage } from '../core/errors';
import { canonical, fingerprint, preview } from './normalize';
import { lockstep, type ItemRecord } from './lockstep';
import { sameRawRange } from './messages';
import type { PassageRef, PassagesDiff } from './types';

/** One passage: its JSON line (archives) or object (live), and its embedding (float32 LE bytes; null: none). */
export interface PassageItem {
  raw?: Buffer;
  obj?: Record<string, unknown>;
  vector?: Buffer | null;
}

/**
 * Passages as a source yields them, in batches: JSON lines (archives: passage k is `lineBufs[k]`
 * bytes `lineStarts[k]`..`lineEnds[k]`) or objects (live), and each one's embedding as
 * little-endian float32 bytes at the true dimension (`vecBufs[k]` bytes `vecStarts[k]`..
 * `vecEnds[k]`; a null buffer: no embedding; no `vecBufs`: the source has no vectors).
 * Iterating a batch gives PassageItems.
 */
export class PassageBatch implements Iterable<PassageItem> {
  length = 0;
  lineBufs?: Buffer[];
  lineStarts?: number[];
  lineEnds?: number[];
  objs?: Array<Record<string, unknown>>;
  vecBufs?: Array<Buffer | null>;
  vecStarts?: number[];
  vecEnds?: number[];

  /** An empty batch of JSON lines, with vectors when `withVectors`. */
  static lines(withVectors: boolean): PassageBatch {
    const b = new PassageBatch();
    b.lineBufs = [];
    b.lineStarts = [];
    b.lineEnds = [];
    if (withVectors) {
      b.vecBufs = [];
      b.vecStarts = [];
      b.vecEnds = [];
    }
    return b;
  }

  static objects(objs: Array<Record<string, unknown>>, vectors: Array<Buffer | null>): PassageBatch {
    const b = new PassageBatch();
    b.length = objs.length;
    b.objs = objs;
    b.vecBufs = vectors;
    b.vecStarts = vectors.map(() => 0);
    b.vecEnds = vectors.map((v) => (v ? v.length : 0));
    return b;
  }

  item(i: number): PassageItem {
    const vb = this.vecBufs ? this.vecBufs[i] : undefined;
    return {
      ...(this.objs ? { obj: this.objs[i] } : { raw: this.lineBufs![i].subarray(this.lineStarts![i], this.lineEnds![i]) }),
      vector: vb === undefined ? undefined : vb === null ? null : vb.subarray(this.vecStarts![i], this.vecEnds![i]),
    };
  }

  *[Symbol.iterator](): Iterator<PassageItem> {
    for (let i = 0; i < this.length; i++) yield this.item(i);
  }
}

/** Passage fields that matter besides the vector (ids, timestamps and organisation are left out). */
export const PASSAGE_TEXT_FIELDS = ['text'] as const;
export const PASSAGE_META_FIELDS = ['tags', 'metadata', 'metadata_', 'is_deleted', 'file_name', 'embedding_config'] as const;

/** float32 little-endian bytes of an embedding given as numbers. */
export function vectorBytes(v: ArrayLike<number> | null | undefined): Buffer | null {
  if (v === null || v === undefined) return null;
  const f = v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
  const out = Buffer.allocUnsafe(f.length * 4);
  for (let i = 0; i < f.length; i++) out.writeFloatLE(f[i], i * 4);
  return out;
}

export function parsePassage(batch: PassageBatch, i: number, position: number, where: string): ItemRecord {
  let p: Record<string, unknown>;
  if (batch.objs) p = batch.objs[i];
  else {
    try {
      p = JSON.parse(batch.lineBufs![i].toString('utf8', batch.lineStarts![i], batch.lineEnds![i])) as Record<string, unknown>;
    } catch (e) {
      throw new AgentVaultError('invalid-archive', `${where}:${position + 1}: passage is not valid JSON: ${errorMessage(e)}`, { location: { file: where, line: position + 1 } });
    }
  }
  if (!p || typeof p !== 'object' || Array.isArray(p)) {
    throw new AgentVaultError('invalid-archive', `${where}:${position + 1}: passage is not a JSON object`, { location: { file: where, line: position + 1 } });
  }
  const text = typeof p.text === 'string' ? p.text : '';
  const meta: Record<string, unknown> = {};
  for (const f of PASSAGE_META_FIELDS) meta[f] = f === 'tags' && Array.isArray(p.tags) ? [...(p.tags as unknown[])].map(String).sort() : p[f];
  let vector: string;
  const vb = batch.vecBufs ? batch.vecBufs[i] : undefined;
  if (p.embedding === null || vb === null) vector = 'none';
  else if (vb) vector = fingerprint(vb.subarray(batch.vecStarts![i], batch.vecEnds![i]));
  else if (Array.isArray(p.embedding)) vector = fingerprint(vectorBytes(p.embedding as number[])!);
  else vector = 'none';
  const parts = { text: fingerprint(text), metadata: fingerprint(canonical(meta)), embedding: vector };
  return {
    id: typeof p.id === 'string' && p.id !== '' ? p.id : null,
    digest: `${parts.text}|${parts.metadata}|${parts.embedding}`,
    position,
    label: null,
    preview: preview(text),
    parts,
    text: text.length > 4000 ? text.slice(0, 4000) : text,
  };
}

const sameBytes = (a: PassageBatch, i: number, b: PassageBatch, j: number): boolean => {
  if (!a.lineBufs || !b.lineBufs || !sameRawRange(a.lineBufs, a.lineStarts!, a.lineEnds!, i, b.lineBufs, b.lineStarts!, b.lineEnds!, j)) return false;
  if (!a.vecBufs || !b.vecBufs) return !a.vecBufs && !b.vecBufs;
  const va = a.vecBufs[i];
  const vb = b.vecBufs[j];
  if (va === null || vb === null) return va === vb;
  return sameRawRange(a.vecBufs as Buffer[], a.vecStarts!, a.vecEnds!, i, b.vecBufs as Buffer[], b.vecStarts!, b.vecEnds!, j);
};

function ref(r: ItemRecord): PassageRef {
  return { position: r.position, id: r.id, preview: r.preview };
}

export async function comparePassages(a: AsyncIterable<PassageBatch>, b: AsyncIterable<PassageBatch>, where: { a: string; b: string }): Promise<PassagesDiff> {
  let vectorsChanged = 0;
  const changedSamples: PassagesDiff['samples']['changed'] = [];
  const r = await lockstep<PassageBatch>(a, b, {
    sameRaw: sameBytes,
    parse: (batch, i, pos, side) => parsePassage(batch, i, pos, side === 'a' ? where.a : where.b),
    sampleLimit: 20,
    onEdited: (x, y) => {
      if (x.parts!.embedding !== y.parts!.embedding) vectorsChanged++;
    },
  });
  for (const s of r.samples.edited) {
    const fields = Object.keys(s.a!.parts!).filter((k) => s.a!.parts![k] !== s.b!.parts![k]);
    changedSamples.push({ a: ref(s.a!), b: ref(s.b!), fields });
  }
  return {
    compared: true,
    a_count: r.aCount,
    b_count: r.bCount,
    delta: r.bCount - r.aCount,
    unchanged: r.unchanged,
    added: r.appended,
    removed: r.removed,
    changed: r.edited,
    vectors_changed: vectorsChanged,
    samples: {
      added: r.samples.appended.map((s) => ref(s.b!)),
      removed: r.samples.removed.map((s) => ref(s.a!)),
      changed: changedSamples,
    },
  };
}

export function passagesNotCompared(reason: string, aCount: number | null, bCount: number | null): PassagesDiff {
  return {
    compared: false,
    reason,
    a_count: aCount,
    b_count: bCount,
    delta: aCount !== null && bCount !== null ? bCount - aCount : null,
    unchanged: 0,
    added: 0,
    removed: 0,
    changed: 0,
    vectors_changed: 0,
    samples: { added: [], removed: [], changed: [] },
  };
}
