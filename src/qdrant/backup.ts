/**
 * Backup of Qdrant collections into an archive: per collection a server-side snapshot streamed
 * down with plain `fetch` (hashed while streaming, checked against the server's checksum), a
 * schema fingerprint, the exact point count and, with `points`, a portable JSON Lines export.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { qdrantSnapshotEntryName } from '../format/archive';
import type { QdrantConnection } from './connection';
import { clusterInfo, ensureSnapshotCoversCollection, listAliases } from './cluster';
import { ensureFreeSpace, estimateCollectionBytes } from './diskspace';
import { usageError, verificationError } from './errors';
import { fingerprintFromInfo, fingerprintSha256 } from './fingerprint';
import { countPoints, exportPoints, type ExportStats } from './points';
import { createServerSnapshot, deleteServerSnapshot, downloadSnapshot } from './snapshots';
import { POINTS_FORMAT, type CollectionFingerprint, type CollectionInfo, type QdrantCollectionManifest, type QdrantManifestSection, type StatfsFn } from './types';

/** What the backup needs from an archive writer (src/format/archive.ts's writer fits). */
export interface ArchiveSink {
  addStream(name: string, stream: NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>): Promise<{ name: string; size: number; sha256: string }> | { name: string; size: number; sha256: string };
}

export interface QdrantBackupOptions {
  /** Collection names; all collections on the server when absent or empty. */
  collections?: string[];
  /** Also export every point (vectors + payload) as portable JSON Lines. */
  points?: boolean;
  /** Directory for temporary snapshot files; should be on the archive's file system (its directory). */
  workDir: string;
  statfs?: StatfsFn;
  /** Keep the server-side snapshots after download (default: delete them). */
  keepServerSnapshots?: boolean;
}

export interface InspectedCollection {
  name: string;
  info: CollectionInfo;
  fingerprint: CollectionFingerprint;
  points_count: number;
}

/** Names of all collections on the server, sorted. */
export async function listServerCollections(conn: QdrantConnection): Promise<string[]> {
  const r = await conn.call('listing collections', (c) => c.getCollections(), { retry: true });
  return r.collections.map((c) => c.name).sort();
}

export async function inspectCollection(conn: QdrantConnection, name: string): Promise<InspectedCollection> {
  conn.onProgress({ phase: 'inspect', collection: name });
  const info = await conn.call(`reading collection '${name}'`, (c) => c.getCollection(name), { retry: true });
  const fingerprint = fingerprintFromInfo(info, name);
  const points_count = await countPoints(conn, name);
  return { name, info, fingerprint, points_count };
}

/**
 * Resolves the selection against the server: a name may be a collection or an alias of one (the
 * collection it points at is backed up); unknown names are a usage error naming what exists.
 */
export async function selectServerCollections(conn: QdrantConnection, wanted: string[] | undefined, aliases?: Map<string, string>): Promise<string[]> {
  const all = await listServerCollections(conn);
  if (!wanted || wanted.length === 0) return all;
  const aliasMap = aliases ?? (await listAliases(conn));
  wanted = wanted.map((w) => {
    if (all.includes(w) || !aliasMap.has(w)) return w;
    const target = aliasMap.get(w)!;
    conn.onProgress({ phase: 'warning', message: `'${w}' is an alias of collection '${target}'; backing up '${target}'.` });
    return target;
  });
  const missing = wanted.filter((w) => !all.includes(w));
  if (missing.length) {
    throw usageError(
      `Collection${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} not found on Qdrant at ${conn.url}`,
      all.length ? `Existing collections: ${all.join(', ')}${aliasMap.size ? `; aliases: ${[...aliasMap.keys()].sort().join(', ')}` : ''}` : 'The server has no collections.',
    );
  }
  return [...new Set(wanted)];
}

/**
 * Adds the selected collections to `writer` and returns the manifest's `qdrant` section.
 * Checks free space (2× the estimated size) in `workDir` first. On failure the caller aborts
 * the archive; temporary files are removed here in every case.
 */
export async function backupCollectionsToSink(writer: ArchiveSink, conn: QdrantConnection, opts: QdrantBackupOptions): Promise<QdrantManifestSection> {
  const server_version = await conn.serverVersion();
  const cluster = await clusterInfo(conn);
  const aliases = await listAliases(conn);
  const names = await selectServerCollections(conn, opts.collections, aliases);
  if (names.length === 0) throw usageError(`Qdrant at ${conn.url} has no collections; nothing to back up`);
  const inspected: InspectedCollection[] = [];
  for (const n of names) inspected.push(await inspectCollection(conn, n));
  // Refuse anything a collection snapshot would not cover completely, before any snapshot is taken.
  for (const c of inspected) await ensureSnapshotCoversCollection(conn, cluster, c.name, c.fingerprint.sharding_method);

  const estimate = inspected.reduce((s, c) => s + estimateCollectionBytes(c.fingerprint, c.points_count, !!opts.points), 0);
  await ensureFreeSpace(opts.workDir, 2 * estimate, `backing up ${inspected.length} Qdrant collection(s) (2 × estimated ${estimate} bytes)`, opts.statfs);

  const tmp = await mkdtemp(join(opts.workDir, '.agent-vault-qdrant-'));
  const out: QdrantCollectionManifest[] = [];
  try {
    const bases = entryBases(inspected.map((c) => c.name));
    for (const col of inspected) {
      const m = await backupOne(writer, conn, col, tmp, opts, bases.get(col.name)!);
      const own = [...aliases]
        .filter(([, c]) => c === col.name)
        .map(([a]) => a)
        .sort();
      if (own.length) m.aliases = own;
      out.push(m);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { server_version, source_url: conn.url, created_at: new Date().toISOString(), collections: out };
}

/**
 * Entry-name stem per collection (`qdrant/<stem>.snapshot`). Qdrant names are case-sensitive but
 * archive entry names must not collide case-insensitively, so colliding stems get a hash suffix.
 */
export function entryBases(names: string[]): Map<string, string> {
  const stem = (n: string) => qdrantSnapshotEntryName(n).replace(/\.snapshot$/, '');
  const counts = new Map<string, number>();
  for (const n of names) counts.set(stem(n).toLowerCase(), (counts.get(stem(n).toLowerCase()) ?? 0) + 1);
  return new Map(
    names.map((n) => {
      const s = stem(n);
      return [n, (counts.get(s.toLowerCase()) ?? 0) > 1 ? `${s}-${createHash('sha256').update(n).digest('hex').slice(0, 8)}` : s];
    }),
  );
}

async function backupOne(writer: ArchiveSink, conn: QdrantConnection, col: InspectedCollection, tmp: string, opts: QdrantBackupOptions, base: string): Promise<QdrantCollectionManifest> {
  // Count right before and right after the snapshot: equal counts pin the snapshot's count.
  const countBefore = await countPoints(conn, col.name);
  const snap = await createServerSnapshot(conn, col.name);
  conn.onProgress({ phase: 'snapshot', collection: col.name, snapshot: snap.name });
  const countAfter = await countPoints(conn, col.name).catch(() => -1);
  const file = join(tmp, `${encodeURIComponent(col.name)}.snapshot`);
  let dl;
  try {
    if (snap.size > 0) await ensureFreeSpace(opts.workDir, 2 * snap.size, `the snapshot of '${col.name}' (2 × ${snap.size} bytes)`, opts.statfs);
    dl = await downloadSnapshot(conn, col.name, snap.name, file, { sha256: snap.checksum, size: snap.size });
  } finally {
    if (!opts.keepServerSnapshots) {
      await deleteServerSnapshot(conn, col.name, snap.name).catch((e: unknown) =>
        conn.onProgress({ phase: 'warning', message: `Could not delete server snapshot '${snap.name}' of '${col.name}': ${(e as Error).message}` }),
      );
    }
  }
  const entryName = `${base}.snapshot`;
  const entry = await writer.addStream(entryName, createReadStream(dl.path));
  await rm(dl.path, { force: true });
  if (entry.sha256 !== dl.sha256 || entry.size !== dl.size) {
    throw verificationError(`Archive entry ${entryName}: stored ${entry.size} bytes with sha256 ${entry.sha256}, but ${dl.size} bytes with sha256 ${dl.sha256} were downloaded`, { entry: entryName });
  }
  const stable = countBefore === countAfter;
  if (!stable) {
    conn.onProgress({
      phase: 'warning',
      message: `Collection '${col.name}' was written to while its snapshot was taken (${countBefore} → ${countAfter} points); its exact point count is not known and will not be checked on restore.`,
    });
  }
  const manifest: QdrantCollectionManifest = {
    name: col.name,
    fingerprint: col.fingerprint,
    fingerprint_sha256: fingerprintSha256(col.fingerprint),
    points_count: countBefore,
    points_count_exact: stable,
    snapshot_entry: entryName,
    snapshot_sha256: dl.sha256,
    snapshot_size: dl.size,
    source_snapshot_name: snap.name,
  };
  if (opts.points) {
    const stats: ExportStats = { exported: 0 };
    const pName = `${base}.points.jsonl`;
    const pEntry = await writer.addStream(pName, exportPoints(conn, col.name, stats));
    manifest.points_entry = pName;
    manifest.points_format = POINTS_FORMAT;
    manifest.points_sha256 = pEntry.sha256;
    manifest.points_exported = stats.exported;
    if (stats.exported !== countBefore) {
      conn.onProgress({ phase: 'warning', message: `Collection '${col.name}': exported ${stats.exported} points, but it had ${countBefore} at snapshot time (written to during backup?).` });
    }
  }
  return manifest;
}

/** Collections recorded in an archive manifest (for the side panel and `qdrant list <archive>`). */
export interface ArchivedCollectionSummary {
  name: string;
  points_count: number;
  vectors: string[];
  sparse_vectors: string[];
  payload_indexes: string[];
  snapshot_size: number;
  has_points_export: boolean;
  fingerprint_sha256: string;
}

/** Summaries of the Qdrant collections in a manifest; [] when it has no `qdrant` section. */
export function listCollectionsInArchive(manifest: { qdrant?: unknown } | null | undefined): ArchivedCollectionSummary[] {
  const q = manifest?.qdrant as Partial<QdrantManifestSection> | undefined;
  if (!q || !Array.isArray(q.collections)) return [];
  // The manifest is untrusted input (the side panel lists damaged archives too): never throw.
  const keys = (o: unknown): string[] => (o && typeof o === 'object' && !Array.isArray(o) ? Object.keys(o) : []);
  return q.collections
    .filter((c): c is QdrantCollectionManifest => !!c && typeof c === 'object' && typeof (c as { name?: unknown }).name === 'string')
    .map((c) => {
      const fp = (c.fingerprint && typeof c.fingerprint === 'object' ? c.fingerprint : undefined) as Partial<CollectionFingerprint> | undefined;
      const v = fp?.vectors as { kind?: unknown; params?: unknown } | undefined;
      const vectors = v?.kind === 'named' ? keys(v.params) : v?.kind === 'single' ? ['(unnamed)'] : [];
      return {
        name: c.name,
        points_count: Number.isInteger(c.points_count) ? c.points_count : 0,
        vectors,
        sparse_vectors: keys(fp?.sparse_vectors),
        payload_indexes: keys(fp?.payload_indexes),
        snapshot_size: typeof c.snapshot_size === 'number' ? c.snapshot_size : 0,
        has_points_export: typeof c.points_entry === 'string',
        fingerprint_sha256: typeof c.fingerprint_sha256 === 'string' ? c.fingerprint_sha256 : '',
      };
    });
}
