/**
 * Schema fingerprints of Qdrant collections: a normalised, canonical summary of the settings
 * that decide whether a snapshot may be recovered over a collection (vectors incl. named, sparse
 * and multivector settings, HNSW, quantization, payload indexes, shard number, on-disk payload).
 */
import { canonicalJson, isObj } from '../core/json';
import { createHash } from 'node:crypto';
import { AgentVaultError } from '../core/errors';
import { FINGERPRINT_V2_KEYS, FINGERPRINT_V3_KEYS, PARAMS_NOT_CREATED } from './types';
import type { CollectionFingerprint, CollectionInfo, DenseVectorFingerprint, PayloadIndexFingerprint, Schemas, SparseVectorFingerprint } from './types';

/** Drops null/undefined members, recursively; sorts object keys. */
function clean(v: unknown): unknown {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) return v.map((x) => clean(x) ?? null);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const c = clean((v as Record<string, unknown>)[k]);
      if (c !== undefined) out[k] = c;
    }
    return out;
  }
  return v;
}

function cleanObject(v: unknown): Record<string, unknown> | undefined {
  const c = clean(v);
  if (c === undefined || typeof c !== 'object' || Array.isArray(c)) return undefined;
  return Object.keys(c as object).length > 0 ? (c as Record<string, unknown>) : undefined;
}

/** JSON with object keys sorted at every level; the input to fingerprint hashes (src/core/json.ts). */
export { canonicalJson };

export function fingerprintSha256(fp: CollectionFingerprint): string {
  return createHash('sha256').update(canonicalJson(fp)).digest('hex');
}

function omitUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

const KNOWN_VECTOR_KEYS = new Set(['size', 'distance', 'datatype', 'on_disk', 'multivector_config', 'hnsw_config', 'quantization_config']);

/**
 * Qdrant's recovery refuses a snapshot unless `params.vectors` equals the collection's as a whole
 * (lib/storage/src/content_manager/snapshots/recover.rs, "Snapshot is not compatible"), so every
 * field counts, including ones newer servers add: those are kept verbatim.
 */
function denseFingerprint(p: Schemas['VectorParams']): DenseVectorFingerprint {
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (KNOWN_VECTOR_KEYS.has(k)) continue;
    const c = clean(v);
    if (c !== undefined) extra[k] = c;
  }
  return omitUndefined({
    ...extra,
    size: p.size,
    distance: p.distance,
    datatype: typeof p.datatype === 'string' ? p.datatype : undefined,
    on_disk: typeof p.on_disk === 'boolean' ? p.on_disk : undefined,
    multivector: cleanObject(p.multivector_config) as Schemas['MultiVectorConfig'] | undefined,
    hnsw: cleanObject(p.hnsw_config),
    quantization: cleanObject(p.quantization_config),
  });
}

function isVectorParams(v: unknown): v is Schemas['VectorParams'] {
  return typeof v === 'object' && v !== null && typeof (v as { size?: unknown }).size === 'number' && typeof (v as { distance?: unknown }).distance === 'string';
}

function infoError(collection: string, message: string): AgentVaultError {
  return new AgentVaultError('QDRANT_BAD_RESPONSE', `Qdrant collection '${collection}': ${message}`, { kind: 'connection' });
}

/** Fingerprint of a collection from `GET /collections/{name}`. */
export function fingerprintFromInfo(info: CollectionInfo, collection: string): CollectionFingerprint {
  const params = info?.config?.params;
  if (!params || typeof params !== 'object') throw infoError(collection, 'collection info has no config.params');
  let vectors: CollectionFingerprint['vectors'];
  const v = params.vectors;
  if (v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0)) vectors = { kind: 'none' };
  else if (isVectorParams(v)) vectors = { kind: 'single', params: denseFingerprint(v) };
  else if (typeof v === 'object') {
    const named: Record<string, DenseVectorFingerprint> = {};
    for (const name of Object.keys(v).sort()) {
      const p = (v as Record<string, unknown>)[name];
      if (!isVectorParams(p)) throw infoError(collection, `vector '${name}' has no size/distance`);
      named[name] = denseFingerprint(p);
    }
    vectors = { kind: 'named', params: named };
  } else throw infoError(collection, 'config.params.vectors has an unexpected shape');

  const sparse: Record<string, SparseVectorFingerprint> = {};
  for (const name of Object.keys(params.sparse_vectors ?? {}).sort()) {
    const s = params.sparse_vectors?.[name] ?? {};
    // Unknown fields of newer servers are kept verbatim, as for dense vectors.
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s)) if (k !== 'index' && k !== 'modifier' && clean(v) !== undefined) extra[k] = clean(v);
    sparse[name] = omitUndefined({
      ...extra,
      index: cleanObject(s.index),
      modifier: typeof s.modifier === 'string' ? s.modifier : undefined,
    });
  }

  const hnswRaw = { ...(info.config.hnsw_config ?? {}) } as Record<string, unknown>;
  // Thread count for index building is a performance knob, not part of the data's shape.
  delete hnswRaw.max_indexing_threads;
  const indexes: Record<string, PayloadIndexFingerprint> = {};
  for (const field of Object.keys(info.payload_schema ?? {}).sort()) {
    const idx = info.payload_schema[field];
    if (!idx) continue;
    indexes[field] = omitUndefined({ data_type: idx.data_type, params: cleanObject(idx.params) });
  }

  const numberOr = (v: unknown, d: number) => (typeof v === 'number' ? v : d);
  // Fields of newer servers than the pinned client's types describe.
  const rawParams = params as Record<string, unknown>;
  return omitUndefined({
    fingerprint_version: 3 as const,
    vectors,
    sparse_vectors: sparse,
    hnsw: cleanObject(hnswRaw) ?? {},
    quantization: cleanObject(info.config.quantization_config),
    payload_indexes: indexes,
    shard_number: params.shard_number ?? 1,
    sharding_method: typeof params.sharding_method === 'string' ? params.sharding_method : 'auto',
    on_disk_payload: params.on_disk_payload ?? true,
    // Version 2: the rest of the config a new collection built from the snapshot takes over.
    replication_factor: numberOr(params.replication_factor, 1),
    write_consistency_factor: numberOr(params.write_consistency_factor, 1),
    read_fan_out_factor: typeof params.read_fan_out_factor === 'number' ? params.read_fan_out_factor : undefined,
    read_fan_out_delay_ms: typeof rawParams.read_fan_out_delay_ms === 'number' ? rawParams.read_fan_out_delay_ms : undefined,
    payload_storage: cleanObject(rawParams.payload),
    optimizers: cleanObject(info.config.optimizer_config),
    wal: cleanObject(info.config.wal_config),
    strict_mode: cleanObject(info.config.strict_mode_config),
    metadata: cleanObject(info.config.metadata),
  });
}

/**
 * Checks a fingerprint read from an archive manifest (untrusted input) and that it matches its
 * recorded SHA-256. `where` names the manifest location for messages.
 */
export function checkManifestFingerprint(fp: unknown, sha256: unknown, where: string): CollectionFingerprint {
  const bad = (msg: string) => new AgentVaultError('QDRANT_MANIFEST', `Manifest ${where}: ${msg}`, { kind: 'failed' });
  if (typeof fp !== 'object' || fp === null) throw bad('fingerprint is missing');
  const f = fp as Partial<CollectionFingerprint>;
  if (f.fingerprint_version !== 1 && f.fingerprint_version !== 2 && f.fingerprint_version !== 3)
    throw bad(`unsupported fingerprint_version ${JSON.stringify(f.fingerprint_version)} (expected 1, 2 or 3)`);
  const kind = (f.vectors as { kind?: unknown } | undefined)?.kind;
  if (kind !== 'single' && kind !== 'named' && kind !== 'none') throw bad(`fingerprint.vectors.kind must be single, named or none`);
  if (typeof f.sparse_vectors !== 'object' || f.sparse_vectors === null) throw bad('fingerprint.sparse_vectors is missing');
  if (typeof f.payload_indexes !== 'object' || f.payload_indexes === null) throw bad('fingerprint.payload_indexes is missing');
  if (typeof f.hnsw !== 'object' || f.hnsw === null) throw bad('fingerprint.hnsw is missing');
  if (typeof f.shard_number !== 'number' || typeof f.on_disk_payload !== 'boolean' || typeof f.sharding_method !== 'string') {
    throw bad('fingerprint.shard_number/sharding_method/on_disk_payload missing or of the wrong type');
  }
  const actual = fingerprintSha256(f as CollectionFingerprint);
  if (sha256 !== actual) throw bad(`fingerprint_sha256 ${String(sha256)} does not match the fingerprint (sha256 ${actual}); the manifest was altered`);
  return f as CollectionFingerprint;
}

export interface FingerprintDifference {
  /** Setting path, e.g. `vectors.text.size`, `hnsw.m`, `payload_indexes.kind.data_type`. */
  setting: string;
  archive: unknown;
  server: unknown;
}

const UNNAMED = '(unnamed)';

function keyPart(k: string): string {
  return k === UNNAMED || /^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k);
}

function comparable(fp: CollectionFingerprint, version: number): Record<string, unknown> {
  const { vectors, fingerprint_version: _v, ...all } = fp;
  void _v;
  const rest: Record<string, unknown> = { ...all };
  // An older fingerprint (older archive) says nothing about the keys later versions added: not compared.
  if (version < 2) for (const k of FINGERPRINT_V2_KEYS) delete rest[k];
  if (version < 3) for (const k of FINGERPRINT_V3_KEYS) delete rest[k];
  const dense = vectors.kind === 'single' ? { [UNNAMED]: vectors.params } : vectors.kind === 'named' ? vectors.params : {};
  return { vectors_mode: vectors.kind, vectors: dense, ...rest };
}

function walk(a: unknown, b: unknown, path: string, out: FingerprintDifference[]): void {
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    for (const k of [...keys].sort()) {
      walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${keyPart(k)}` : keyPart(k), out);
    }
    return;
  }
  if (canonicalJson(a) !== canonicalJson(b)) out.push({ setting: path, archive: a, server: b });
}

/** Config sections a newer server may fill with defaults of its own for settings older servers did not have. */
const DEFAULTS_ADDED_BY_SERVER = ['optimizers.', 'wal.', 'strict_mode.'];

/**
 * Settings that differ between the archive's fingerprint and the server's, most specific paths.
 * With `allowServerDefaults` (checking a collection Qdrant just built from the archive's snapshot),
 * a setting inside the optimizer, WAL or strict-mode config that the archive does not have at all
 * is not a difference: a newer server adds its defaults for settings the snapshot's version lacked.
 */
export function diffFingerprints(archive: CollectionFingerprint, server: CollectionFingerprint, opts: { allowServerDefaults?: boolean } = {}): FingerprintDifference[] {
  const out: FingerprintDifference[] = [];
  const version = Math.min(archive.fingerprint_version, server.fingerprint_version);
  walk(comparable(archive, version), comparable(server, version), '', out);
  if (!opts.allowServerDefaults) return out;
  return out.filter((d) => !(d.archive === undefined && DEFAULTS_ADDED_BY_SERVER.some((p) => d.setting.startsWith(p))));
}

function show(v: unknown): string {
  return v === undefined ? '(not set)' : canonicalJson(v);
}

export function formatDifferences(diffs: FingerprintDifference[]): string {
  return diffs.map((d) => `${d.setting} (archive ${show(d.archive)}, server ${show(d.server)})`).join('; ');
}

function vectorParamsFromFingerprint(p: DenseVectorFingerprint): Schemas['VectorParams'] {
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) if (!['size', 'distance', 'datatype', 'on_disk', 'multivector', 'hnsw', 'quantization'].includes(k)) extra[k] = v;
  return omitUndefined({
    ...extra,
    size: p.size,
    distance: p.distance,
    datatype: p.datatype as Schemas['Datatype'] | undefined,
    on_disk: p.on_disk,
    multivector_config: p.multivector,
    hnsw_config: p.hnsw as Schemas['HnswConfigDiff'] | undefined,
    quantization_config: p.quantization as Schemas['QuantizationConfig'] | undefined,
  });
}

/** Body of `PUT /collections/{name}` that creates an empty collection with these settings. */
export function createCollectionBody(fp: CollectionFingerprint): Schemas['CreateCollection'] {
  let vectors: Schemas['VectorsConfig'];
  if (fp.vectors.kind === 'single') vectors = vectorParamsFromFingerprint(fp.vectors.params);
  else if (fp.vectors.kind === 'named') {
    const named: Record<string, Schemas['VectorParams']> = {};
    for (const [n, p] of Object.entries(fp.vectors.params)) named[n] = vectorParamsFromFingerprint(p);
    vectors = named;
  } else vectors = {};
  const sparse: Record<string, Schemas['SparseVectorParams']> = {};
  for (const [n, s] of Object.entries(fp.sparse_vectors)) {
    const { index, modifier, ...extra } = s as SparseVectorFingerprint & Record<string, unknown>;
    sparse[n] = omitUndefined({ ...extra, index: index as Schemas['SparseIndexParams'] | undefined, modifier: modifier as Schemas['Modifier'] | undefined });
  }
  return omitUndefined({
    vectors,
    sparse_vectors: Object.keys(sparse).length ? sparse : undefined,
    hnsw_config: Object.keys(fp.hnsw).length ? (fp.hnsw as Schemas['HnswConfigDiff']) : undefined,
    quantization_config: fp.quantization as Schemas['QuantizationConfig'] | undefined,
    shard_number: fp.shard_number,
    sharding_method: fp.sharding_method as Schemas['ShardingMethod'],
    on_disk_payload: fp.on_disk_payload,
    ...(fp.payload_storage ? { payload: fp.payload_storage } : {}),
    replication_factor: fp.replication_factor,
    write_consistency_factor: fp.write_consistency_factor,
    optimizers_config: fp.optimizers as Schemas['OptimizersConfigDiff'] | undefined,
    wal_config: fp.wal as Schemas['WalConfigDiff'] | undefined,
    strict_mode_config: fp.strict_mode as Schemas['StrictModeConfig'] | undefined,
    metadata: fp.metadata as Schemas['Payload'] | undefined,
  });
}

/**
 * Body of `PATCH /collections/{name}` setting the params a create request (and so a recovery into a
 * missing collection) cannot carry (PARAMS_NOT_CREATED); undefined when the fingerprint sets none.
 */
export function paramsNotCreatedPatch(fp: CollectionFingerprint): Schemas['UpdateCollection'] | undefined {
  const params: Record<string, number> = {};
  for (const k of PARAMS_NOT_CREATED) if (typeof fp[k] === 'number') params[k] = fp[k];
  return Object.keys(params).length ? { params: params as Schemas['CollectionParamsDiff'] } : undefined;
}

/** `PUT /collections/{name}/index` bodies recreating the payload indexes. */
export function payloadIndexRequests(fp: CollectionFingerprint): { field_name: string; field_schema: Schemas['PayloadFieldSchema'] }[] {
  return Object.entries(fp.payload_indexes).map(([field, idx]) => ({
    field_name: field,
    field_schema: (idx.params && Object.keys(idx.params).length ? idx.params : idx.data_type) as Schemas['PayloadFieldSchema'],
  }));
}

/** Dense dimensions summed over all vectors (for size estimates). */
export function denseDimensions(fp: CollectionFingerprint): { floats: number; bytesPerValue: number } {
  const all = fp.vectors.kind === 'single' ? [fp.vectors.params] : fp.vectors.kind === 'named' ? Object.values(fp.vectors.params) : [];
  let floats = 0;
  let bytes = 0;
  for (const p of all) {
    const b = p.datatype === 'uint8' ? 1 : p.datatype === 'float16' ? 2 : 4;
    floats += p.size;
    bytes = Math.max(bytes, b);
  }
  return { floats, bytesPerValue: bytes || 4 };
}
