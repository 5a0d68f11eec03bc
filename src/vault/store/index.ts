/** The deduplicating store: see ./repo.ts and docs/FORMAT.md part II. */
export * from './repo';
export { DEFAULT_CHUNKER, chunkKindFor, Chunker, type ChunkerParams, type ChunkKind } from './chunker';
export { STORE_FORMAT, STORE_VERSION, type SnapshotFile, type SnapshotEntry, type StoreConfig } from './format';
