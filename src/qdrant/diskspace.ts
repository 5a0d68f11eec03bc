/** Free-space checks before anything large is written (statfs injectable for tests). */
import { statfs as nodeStatfs } from 'node:fs/promises';
import { AgentVaultError } from '../core/errors';
import { formatBytes } from '../core/bytes';
import { denseDimensions } from './fingerprint';
import type { CollectionFingerprint, StatfsFn } from './types';

const defaultStatfs: StatfsFn = (dir) => nodeStatfs(dir);

export async function freeBytes(dir: string, statfs: StatfsFn = defaultStatfs): Promise<number> {
  let s: Awaited<ReturnType<StatfsFn>>;
  try {
    s = await statfs(dir);
  } catch (e) {
    throw new AgentVaultError('QDRANT_DISK', `Cannot read free disk space of ${dir}: ${(e as Error).message}`, { kind: 'conflict', location: { file: dir }, cause: e });
  }
  return Number(s.bavail) * Number(s.bsize);
}

/** Throws (kind 'conflict') unless `dir` has at least `required` bytes free. */
export async function ensureFreeSpace(dir: string, required: number, what: string, statfs?: StatfsFn): Promise<number> {
  const free = await freeBytes(dir, statfs);
  if (free < required) {
    throw new AgentVaultError('QDRANT_DISK', `Not enough free disk space in ${dir} for ${what}: ${formatBytes(required)} needed, ${formatBytes(free)} free`, {
      kind: 'conflict',
      location: { file: dir },
      hint: 'Free some space or write to another directory.',
    });
  }
  return free;
}

/** Rough size of one collection's snapshot (+ JSON Lines export with `withPoints`), in bytes. */
export function estimateCollectionBytes(fp: CollectionFingerprint, points: number, withPoints: boolean): number {
  const { floats, bytesPerValue } = denseDimensions(fp);
  const sparse = Object.keys(fp.sparse_vectors).length * 64 * 8;
  const perPoint = floats * bytesPerValue + sparse + 512; // payload, ids, index share
  let bytes = 64 * 1024 + points * perPoint;
  // JSON numbers take ~10–20 characters each.
  if (withPoints) bytes += points * (floats * 20 + sparse * 2 + 1024);
  return Math.ceil(bytes);
}
