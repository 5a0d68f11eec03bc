/**
 * Types shared by the Qdrant backup/restore code. Every request and response shape comes from
 * the OpenAPI types that ship with `@qdrant/js-client-rest` (1.18.0): `Schemas` for component
 * schemas and `ClientApi` (the generated, path-derived client) for whole response envelopes.
 */
import type { QdrantClient, Schemas } from './client';

export type { Schemas };

/** The generated OpenAPI client (`client.api()`): one typed function per operation id. */
export type QdrantApi = ReturnType<QdrantClient['api']>;
export type QdrantOperation = keyof QdrantApi;
/** The JSON body of a 200 response of an operation, as the OpenAPI document declares it. */
export type QdrantOkBody<K extends QdrantOperation> = Awaited<ReturnType<QdrantApi[K]>>['data'];
/** The arguments (path + query + JSON body) the generated client takes for an operation. */
export type QdrantOpArgs<K extends QdrantOperation> = Parameters<QdrantApi[K]>[0];

export type CollectionInfo = Schemas['CollectionInfo'];
export type SnapshotDescription = Schemas['SnapshotDescription'];
export type PointRecord = Schemas['Record'];
export type PointStruct = Schemas['PointStruct'];
export type ExtendedPointId = Schemas['ExtendedPointId'];

/** Normalised settings of one dense vector (named or the single unnamed one). */
export interface DenseVectorFingerprint {
  /** Any other VectorParams field the server reports (newer servers), verbatim: Qdrant compares the whole struct. */
  [other: string]: unknown;
  size: number;
  distance: Schemas['Distance'];
  datatype?: string;
  on_disk?: boolean;
  multivector?: Schemas['MultiVectorConfig'];
  hnsw?: Record<string, unknown>;
  quantization?: Record<string, unknown>;
}

export interface SparseVectorFingerprint {
  index?: Record<string, unknown>;
  modifier?: string;
}

export interface PayloadIndexFingerprint {
  data_type: Schemas['PayloadSchemaType'];
  params?: Record<string, unknown>;
}

/**
 * Everything about a collection that must agree before a snapshot may be recovered over it, and
 * everything needed to create an equivalent empty collection. Keys with no value are omitted, so
 * the canonical JSON (sorted keys) is stable.
 */
export interface CollectionFingerprint {
  /**
   * 1: schema only (older archives); 2: also replication/write-consistency factors, read fan-out
   * factor, optimizer, WAL, strict mode and metadata, so a restored collection's config can be
   * checked in full; 3: also read fan-out delay and payload storage (Qdrant ≥ 1.19 params).
   */
  fingerprint_version: 1 | 2 | 3;
  /** `single`: one unnamed vector; `named`: a map of named vectors; `none`: sparse-only collection. */
  vectors: { kind: 'single'; params: DenseVectorFingerprint } | { kind: 'named'; params: Record<string, DenseVectorFingerprint> } | { kind: 'none' };
  sparse_vectors: Record<string, SparseVectorFingerprint>;
  hnsw: Record<string, unknown>;
  quantization?: Record<string, unknown>;
  payload_indexes: Record<string, PayloadIndexFingerprint>;
  shard_number: number;
  sharding_method: string;
  on_disk_payload: boolean;
  /** Version 2 and later (absent in version 1 fingerprints). */
  replication_factor?: number;
  write_consistency_factor?: number;
  read_fan_out_factor?: number;
  /** Version 3 (Qdrant ≥ 1.19 param): delay before a read fans out to another replica. */
  read_fan_out_delay_ms?: number;
  /** Version 3 (Qdrant ≥ 1.19 param): `params.payload` (payload storage, e.g. `{memory: "cold"}`). */
  payload_storage?: Record<string, unknown>;
  optimizers?: Record<string, unknown>;
  wal?: Record<string, unknown>;
  strict_mode?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

/** Fingerprint keys that only version 2 has. */
export const FINGERPRINT_V2_KEYS = ['replication_factor', 'write_consistency_factor', 'read_fan_out_factor', 'optimizers', 'wal', 'strict_mode', 'metadata'] as const;
/** Fingerprint keys that only version 3 has (an archive of an older version says nothing about them). */
export const FINGERPRINT_V3_KEYS = ['read_fan_out_delay_ms', 'payload_storage'] as const;

/**
 * Collection params a create request cannot carry (Qdrant's CreateCollection has no such fields), so
 * neither `PUT /collections/{c}` nor a recovery into a missing collection (which creates it from the
 * snapshot's config through that request: lib/storage/src/content_manager/collection_meta_ops.rs
 * `From<CollectionConfigInternal> for CreateCollection`) sets them; only `PATCH /collections/{c}` does.
 */
export const PARAMS_NOT_CREATED = ['read_fan_out_factor', 'read_fan_out_delay_ms'] as const;

/** One collection in the manifest's `qdrant` section. */
export type QdrantCollectionManifest = {
  name: string;
  fingerprint: CollectionFingerprint;
  fingerprint_sha256: string;
  /** Exact point count taken just before the snapshot was created. */
  points_count: number;
  /**
   * True when the count taken right after the snapshot was the same, so `points_count` is the
   * snapshot's count and restore checks it; false (collection written to meanwhile) skips that check.
   */
  points_count_exact?: boolean;
  /** Archive entry holding the snapshot bytes, e.g. `qdrant/memories.snapshot`. Opaque bytes. */
  snapshot_entry: string;
  /** SHA-256 of the snapshot bytes as downloaded (hex); checked again before any upload. */
  snapshot_sha256: string;
  snapshot_size: number;
  /** Name the server gave the snapshot (it is deleted from the server after download unless kept). */
  source_snapshot_name: string;
  /** Aliases that pointed at the collection when it was backed up (restored pointing at the target). */
  aliases?: string[];
  /** Present with `--points`: JSON Lines, one `{id, vector, payload}` per line. */
  points_entry?: string;
  points_format?: typeof POINTS_FORMAT;
  points_sha256?: string;
  points_exported?: number;
};

/** The manifest's `qdrant` section. */
export type QdrantManifestSection = {
  server_version: string;
  /** Server address without credentials. */
  source_url?: string;
  created_at: string;
  collections: QdrantCollectionManifest[];
};

export const POINTS_FORMAT = 'agent-vault.qdrant-points.v1' as const;

/** Free-space probe (injectable for tests); the shape of Node's `fs.promises.statfs` result we use. */
export type StatfsFn = (dir: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;

export type QdrantProgress =
  | { phase: 'inspect'; collection: string }
  | { phase: 'snapshot'; collection: string; snapshot: string }
  | { phase: 'download'; collection: string; attempt: number; bytes?: number }
  | { phase: 'retry'; what: string; attempt: number; error: string }
  | { phase: 'points'; collection: string; exported: number }
  | { phase: 'verify'; collection: string }
  | { phase: 'safety-snapshot'; collection: string; snapshot: string }
  | { phase: 'create'; collection: string }
  | { phase: 'upload'; collection: string }
  | { phase: 'upsert'; collection: string; upserted: number }
  | { phase: 'rollback'; collection: string; action: 'delete' | 'recover' }
  | { phase: 'warning'; message: string };

export type ProgressFn = (event: QdrantProgress) => void;
