/**
 * Streaming read of an agent's archival passages from an archive: the JSON lines of
 * `passages/<id>.jsonl` joined with the rows of `passages/<id>.vectors` (line i ↔ row i), in
 * batches of byte ranges (views into the stream's chunks: no object per passage on the hot path).
 * Shared by the diff (src/diff/sources.ts) and the restore (src/letta/restore.ts).
 */
import { AgentVaultError } from '../core/errors';
import type { ChunkReader } from './entry-stream';
import { parseVectorHeader, VECTOR_HEADER_SIZE } from './vectors';

/**
 * Passages as JSON lines: passage k is `lineBufs[k]` bytes `lineStarts[k]`..`lineEnds[k]`; its
 * embedding (little-endian float32 at the true dimension) is `vecBufs[k]` bytes `vecStarts[k]`..
 * `vecEnds[k]` (no `vecBufs`: the archive has no vectors for the agent). Valid until the next
 * batch is asked for.
 */
export interface RawPassageBatch {
  length: number;
  lineBufs?: Buffer[];
  lineStarts?: number[];
  lineEnds?: number[];
  vecBufs?: Array<Buffer | null>;
  vecStarts?: number[];
  vecEnds?: number[];
}

/** A plain batch (the restore's; the diff has its own class with the same fields). */
export function rawPassageBatch(withVectors: boolean): RawPassageBatch {
  return withVectors ? { length: 0, lineBufs: [], lineStarts: [], lineEnds: [], vecBufs: [], vecStarts: [], vecEnds: [] } : { length: 0, lineBufs: [], lineStarts: [], lineEnds: [] };
}

/**
 * Vector rows from a ChunkReader (whose chunk is overwritten by the next read): a row is a range
 * of the current chunk, or a small copy when it straddles two chunks.
 */
class RowReader {
  private chunk: Buffer = Buffer.alloc(0);
  private off = 0;
  recordSize = 0;

  constructor(
    private readonly reader: ChunkReader,
    private readonly where: string,
  ) {}

  /** Rows left in the current chunk (readable without a read that would overwrite it). */
  get ready(): number {
    return this.recordSize ? Math.floor((this.chunk.length - this.off) / this.recordSize) : 0;
  }

  /** The next `n` bytes as [buffer, start]: a range of the chunk, or a copy across chunk edges (null at the end). */
  private async take(n: number): Promise<[Buffer, number] | null> {
    if (this.chunk.length - this.off >= n) {
      const r: [Buffer, number] = [this.chunk, this.off];
      this.off += n;
      return r;
    }
    const out = Buffer.allocUnsafe(n);
    let have = this.chunk.copy(out, 0, this.off);
    this.chunk = Buffer.alloc(0);
    this.off = 0;
    while (have < n) {
      const c = await this.reader.next();
      if (c === null) {
        if (have > 0) throw new AgentVaultError('corrupt', `${this.where}: the vector file ends with a partial record`, { location: { file: this.where } });
        return null;
      }
      const k = Math.min(n - have, c.length);
      c.copy(out, have, 0, k);
      have += k;
      this.chunk = c;
      this.off = k;
    }
    return [out, 0];
  }

  async header(): Promise<void> {
    const h = await this.take(VECTOR_HEADER_SIZE);
    if (!h) throw new AgentVaultError('corrupt', `${this.where}: vector file is shorter than its ${VECTOR_HEADER_SIZE}-byte header`, { location: { file: this.where } });
    this.recordSize = parseVectorHeader(h[0].subarray(h[1], h[1] + VECTOR_HEADER_SIZE), undefined, this.where).recordSize;
  }

  /** The next row as [buffer, start], or null at the end of the file. */
  row(): Promise<[Buffer, number] | null> {
    return this.take(this.recordSize);
  }
}

/**
 * Passages of an archive: jsonl lines joined with vector rows (line i ↔ row i), in batches. A
 * batch is handed out before a read would overwrite the vector chunk its rows point into (the
 * consumer is done with a batch when it asks for the next one).
 */
export async function* passageBatches<B extends RawPassageBatch>(
  lines: AsyncIterable<Buffer>,
  vectors: ChunkReader | null,
  where: string,
  vectorsWhere: string,
  newBatch: (withVectors: boolean) => B,
): AsyncGenerator<B> {
  const rows = vectors ? new RowReader(vectors, vectorsWhere) : null;
  if (rows) await rows.header();
  let batch = newBatch(rows !== null);
  let carry: Buffer | null = null;
  let lineNo = 0;
  /** Adds a line (bytes start..end of buf) with its row; returns false when the batch must go out first. */
  const add = async (buf: Buffer, start: number, end: number): Promise<void> => {
    lineNo++;
    if (end > start && buf[end - 1] === 0x0d) end--;
    let blank = true;
    for (let k = start; k < end && blank; k++) if (buf[k] > 0x20) blank = false;
    if (blank) return;
    batch.lineBufs!.push(buf);
    batch.lineStarts!.push(start);
    batch.lineEnds!.push(end);
    if (rows) {
      const r = await rows.row();
      if (!r) throw new AgentVaultError('corrupt', `${where}:${lineNo}: there are more passages than vectors in ${vectorsWhere}`, { location: { file: where, line: lineNo } });
      batch.vecBufs!.push(r[0]);
      batch.vecStarts!.push(r[1]);
      batch.vecEnds!.push(r[1] + rows.recordSize);
    }
    batch.length++;
  };
  /** Whether the next line's row would need a new vector chunk (so the batch must go out first). */
  const mustFlush = (): boolean => rows !== null && rows.ready === 0 && batch.length > 0;
  for await (const chunk of lines) {
    let start = 0;
    let nl = chunk.indexOf(0x0a);
    if (carry !== null && nl >= 0) {
      if (mustFlush()) {
        yield batch;
        batch = newBatch(rows !== null);
      }
      const line: Buffer = Buffer.concat([carry, chunk.subarray(0, nl)]);
      await add(line, 0, line.length);
      carry = null;
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    while (nl >= 0) {
      if (mustFlush()) {
        yield batch;
        batch = newBatch(rows !== null);
      }
      await add(chunk, start, nl);
      start = nl + 1;
      nl = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) carry = carry ? Buffer.concat([carry, chunk.subarray(start)]) : Buffer.from(chunk.subarray(start));
  }
  if (carry !== null) {
    if (mustFlush()) {
      yield batch;
      batch = newBatch(rows !== null);
    }
    await add(carry, 0, carry.length);
  }
  if (batch.length) yield batch;
  if (rows && (await rows.row()) !== null) {
    throw new AgentVaultError('corrupt', `${vectorsWhere}: there are more vectors than passages in ${where}`, { location: { file: vectorsWhere } });
  }
}
