/**
 * Qdrant collections inside Agent Vault snapshot archives (src/format/archive.ts): entries
 * `qdrant/<name>.snapshot` (+ `qdrant/<name>.points.jsonl` with points) and the manifest's
 * `qdrant` section.
 */
import { dirname } from 'node:path';
import { createArchiveWriter, openArchive, type ArchiveReader, type ArchiveWriter, type Manifest, type ManifestInput } from '../format/archive';
import { backupCollectionsToSink, listCollectionsInArchive, type ArchivedCollectionSummary, type QdrantBackupOptions } from './backup';
import type { QdrantConnection } from './connection';
import { restoreCollectionsFromSource, type QdrantRestoreOptions, type QdrantRestoreResult } from './restore';
import type { QdrantManifestSection } from './types';

export type AddCollectionsOptions = Omit<QdrantBackupOptions, 'workDir'> & {
  /** Temporary snapshot files go here; default: the archive's folder (same file system, so the 2× space check is meaningful). */
  workDir?: string;
};

/**
 * Snapshots the selected collections (all when none are named) into `writer` and returns the
 * manifest's `qdrant` section; pass it to `writer.finish({ …, qdrant })`.
 */
export async function addCollectionsToArchive(writer: ArchiveWriter, conn: QdrantConnection, opts: AddCollectionsOptions = {}): Promise<QdrantManifestSection> {
  return backupCollectionsToSink(writer, conn, { ...opts, workDir: opts.workDir ?? dirname(writer.path) });
}

/** The section as the archive module's `Manifest['qdrant']` type. */
export function toManifestQdrant(section: QdrantManifestSection): NonNullable<Manifest['qdrant']> {
  return section;
}

export interface QdrantArchiveBackupResult {
  path: string;
  bytes: number;
  manifest: Manifest;
  qdrant: QdrantManifestSection;
}

/**
 * A Qdrant-only archive at `out` (temp file + rename; an existing file only with `overwrite`).
 * On any failure the partial archive is removed.
 */
export async function backupQdrantToArchive(
  out: string,
  conn: QdrantConnection,
  opts: AddCollectionsOptions & { overwrite?: boolean; manifest?: Partial<ManifestInput> } = {},
): Promise<QdrantArchiveBackupResult> {
  const writer = await createArchiveWriter(out, { overwrite: opts.overwrite });
  try {
    const qdrant = await addCollectionsToArchive(writer, conn, opts);
    const res = await writer.finish({ agents: [], ...opts.manifest, qdrant: toManifestQdrant(qdrant) });
    return { path: res.path, bytes: res.bytes, manifest: res.manifest, qdrant };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** Restores collections from an opened archive (see restore.ts for the guarantees). */
export async function restoreQdrantFromArchive(reader: ArchiveReader, conn: QdrantConnection, opts: QdrantRestoreOptions = {}): Promise<QdrantRestoreResult> {
  return restoreCollectionsFromSource(reader, conn, { archiveLabel: reader.path, ...opts });
}

/** Opens `archivePath`, restores, closes. */
export async function restoreQdrantFromArchivePath(archivePath: string, conn: QdrantConnection, opts: QdrantRestoreOptions = {}): Promise<QdrantRestoreResult> {
  const reader = await openArchive(archivePath);
  try {
    return await restoreQdrantFromArchive(reader, conn, opts);
  } finally {
    await reader.close();
  }
}

export { listCollectionsInArchive, type ArchivedCollectionSummary };
