/** Public API of the Qdrant module (backup/restore of collections in snapshot archives). */
export {
  addCollectionsToArchive,
  backupQdrantToArchive,
  listCollectionsInArchive,
  restoreQdrantFromArchive,
  restoreQdrantFromArchivePath,
  toManifestQdrant,
  type AddCollectionsOptions,
  type ArchivedCollectionSummary,
  type QdrantArchiveBackupResult,
} from './archive';
export { backupCollectionsToSink, inspectCollection, listServerCollections, selectServerCollections, type ArchiveSink, type QdrantBackupOptions } from './backup';
export { API_KEY_SECRET, DEFAULT_API_KEY_ENV, QdrantConnection, normaliseQdrantUrl, resolveApiKey, type QdrantConnectionOptions } from './connection';
export type { SecretReader } from '../core/secrets';
export { canonicalJson, createCollectionBody, diffFingerprints, fingerprintFromInfo, fingerprintSha256, formatDifferences, type FingerprintDifference } from './fingerprint';
export { readQdrantSection, restoreCollectionsFromSource, type ArchiveSource, type QdrantRestoreOptions, type QdrantRestoreResult, type RestorePlanItem } from './restore';
export type { CollectionFingerprint, QdrantCollectionManifest, QdrantManifestSection, QdrantProgress, StatfsFn } from './types';
