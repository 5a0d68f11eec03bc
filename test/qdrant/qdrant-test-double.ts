/**
 * TEST DOUBLE of a Qdrant server — NOT Qdrant. No real Qdrant runs anywhere in this test suite.
 *
 * A small in-memory HTTP server that answers the REST endpoints Agent Vault uses, with response
 * bodies typed against the OpenAPI types shipped in `@qdrant/js-client-rest` (via `ClientApi`
 * and `Schemas`), so a response shape that drifts from the real API fails to type-check:
 *
 *   GET /                                            version info
 *   GET /collections                                 list
 *   GET|PUT|PATCH|DELETE /collections/{c}            info / create / update params and config / delete
 *   GET /collections/{c}/exists
 *   PUT /collections/{c}/index                       create payload index
 *   POST|GET /collections/{c}/snapshots              create / list snapshots
 *   GET|DELETE /collections/{c}/snapshots/{s}        download (binary) / delete
 *   PUT /collections/{c}/snapshots/recover           recover from URL of this server
 *   POST /collections/{c}/snapshots/upload           recover from multipart upload (field `snapshot`)
 *   POST /collections/{c}/points/scroll | /points/count | /points/delete,  PUT /collections/{c}/points (upsert)
 *
 *   GET /cluster, GET /collections/{c}/cluster       cluster status / shard states
 *   GET /telemetry                                   running snapshot recoveries per collection (details_level ≥ 2)
 *   GET /aliases, GET /collections/{c}/aliases, POST /collections/aliases
 *
 * Behaviour modelled on real Qdrant (each place names the Qdrant source file it mirrors):
 *   - snapshots are tar archives (lib/collection/src/collection/snapshots.rs writes a tar of
 *     config.json, payload_index.json and the shard directories);
 *   - recovery into an EXISTING collection keeps that collection's config and payload indexes,
 *     replaces only the points, and answers 400 unless vector params and shard number equal the
 *     snapshot's; recovery into a MISSING collection creates it from the snapshot's config and
 *     payload indexes (lib/storage/src/content_manager/snapshots/recover.rs) through the ordinary
 *     create request, which drops read_fan_out_factor/read_fan_out_delay_ms
 *     (lib/storage/src/content_manager/collection_meta_ops.rs); only PATCH sets those;
 *   - a failed shard restore leaves the local replica Dead (lib/collection/src/shards/replica_set/snapshots.rs);
 *   - an uploaded snapshot file is moved into the collection's snapshot folder under the file name
 *     sent and stays listed until deleted (src/actix/api/snapshot_api.rs do_save_uploaded_snapshot);
 *     deleting a collection does not delete its snapshot folder, and listing/deleting snapshots of
 *     a missing collection is a 404 (lib/storage/src/content_manager/toc/collection_meta_ops.rs);
 *   - only `*.snapshot` files are listed, uploaded ones without checksum
 *     (lib/collection/src/common/snapshots_manager.rs, operations/snapshot_ops.rs);
 *   - a request the client abandons keeps running on the server, and `wait=false` answers 202
 *     "accepted" at once (src/actix/helpers.rs time_or_accept);
 *   - 401 bodies are plain text without a content-type, not JSON; `/`, `/healthz`, `/readyz`,
 *     `/livez` need no key (src/actix/auth.rs, src/actix/mod.rs);
 *   - query validation: 422 for a malformed `checksum`, 400 for an undecodable `wait` (src/actix/mod.rs);
 *   - aliases: create overwrites an existing alias of that name (toc/collection_meta_ops.rs).
 * Snapshots contain a block of all 256 byte values, so any text decoding of a download is detected.
 *
 * Fault modes (`faults`, each with a `times` budget): drop the connection mid-download, stall a
 * download, serve corrupted snapshot bytes (checksum mismatch), fail during recover after having
 * damaged the target, delay or fail arbitrary requests.
 */
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { QdrantOkBody, QdrantOperation, Schemas } from '../../src/qdrant/types';

type PointId = Schemas['ExtendedPointId'];
interface StoredPoint {
  id: PointId;
  vector: Schemas['VectorStructOutput'];
  payload: Schemas['Payload'];
}
interface StoredIndex {
  data_type: Schemas['PayloadSchemaType'];
  params?: Schemas['PayloadSchemaParams'];
}
interface StoredCollection {
  config: Schemas['CollectionConfig'];
  payload_schema: Record<string, StoredIndex>;
  points: Map<string, StoredPoint>;
  /** Replica state of the (local) shards: 'Active', or 'ManualRecovery' during a recovery (recover.rs). */
  shardState?: Schemas['ReplicaState'];
}
interface StoredSnapshot {
  bytes: Buffer;
  description: Schemas['SnapshotDescription'];
}

interface Times {
  times: number;
}
export interface DoubleFaults {
  /** Send this many bytes of a snapshot download, then destroy the connection. */
  downloadDropAfterBytes?: Times & { bytes: number };
  /** Send this many bytes of a snapshot download, then send nothing more (client must time out). */
  downloadStall?: Times & { bytes: number };
  /** Serve snapshot bytes with one byte flipped (the advertised checksum stays that of the true bytes). */
  corruptDownload?: Times;
  /** On snapshot upload: damage the target collection (drop half its points, change hnsw.m), then answer 500. */
  recoverFailure?: Times;
  /**
   * On snapshot upload: first `unpackMs` of downloading/unpacking with the shards untouched, then the
   * target's shards in ManualRecovery for `ms`, then the recovery finishes (recover.rs).
   */
  slowRecovery?: Times & { ms: number; unpackMs?: number };
  /** Wait `ms` before answering matching requests. */
  delay?: Times & { method?: string; path: RegExp; ms: number };
  /** Answer matching requests with this HTTP status and an ErrorResponse body. */
  failStatus?: Times & { method?: string; path: RegExp; status: number };
}

export interface LoggedRequest {
  method: string;
  path: string;
  query: string;
  headers: http.IncomingHttpHeaders;
  contentType?: string;
}

/** This node's peer id (appears in snapshot names and `GET /collections/{c}/cluster`). */
const PEER_ID = 1;

const BINARY_BLOCK = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** One ustar header + data padded to 512 bytes (POSIX tar, as Qdrant's snapshots are). */
function tarEntry(name: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(data.length.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([h, data, Buffer.alloc(pad)]);
}

function tarPack(files: [string, Buffer][]): Buffer {
  return Buffer.concat([...files.map(([n, d]) => tarEntry(n, d)), Buffer.alloc(1024)]);
}

/** Entries of a ustar archive; throws on anything that is not one (bad checksum, truncated). */
function tarUnpack(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) return out;
    const stored = parseInt(h.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== stored || h.subarray(257, 262).toString('latin1') !== 'ustar') throw new Error('not a tar archive');
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
    if (off + 512 + size > buf.length) throw new Error('truncated tar archive');
    out.set(name, buf.subarray(off + 512, off + 512 + size));
    off += 512 + size + ((512 - (size % 512)) % 512);
  }
  throw new Error('tar archive without end marker');
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function pointKey(id: PointId): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id.toLowerCase()}`;
}

function comparePointIds(a: PointId, b: PointId): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0;
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

function isVectorParams(v: unknown): v is Schemas['VectorParams'] {
  return typeof v === 'object' && v !== null && 'size' in v && 'distance' in v;
}

const DISTANCES = new Set(['Cosine', 'Euclid', 'Dot', 'Manhattan']);

export class QdrantTestDouble {
  readonly collections = new Map<string, StoredCollection>();
  readonly snapshots = new Map<string, Map<string, StoredSnapshot>>();
  readonly requests: LoggedRequest[] = [];
  /** alias → collection (lib/storage/src/content_manager/alias_mapping.rs). */
  readonly aliases = new Map<string, string>();
  /** `GET /cluster` answer: disabled (single node) unless a test sets a distributed status. */
  cluster: Schemas['ClusterStatus'] = { status: 'disabled' };
  /** Shards of each collection living on other peers (distributed mode), for `GET /collections/{c}/cluster`. */
  remoteShards = new Map<string, Schemas['RemoteShardInfo'][]>();
  faults: DoubleFaults = {};
  /** Recoveries running per collection, reported by `GET /telemetry?details_level=2` (toc/telemetry.rs). */
  readonly runningRecoveries = new Map<string, number>();
  version: string;
  apiKey?: string;
  private server?: http.Server;
  private seq = 0;
  private opSeq = 0;
  private stalled = new Set<http.ServerResponse>();

  constructor(opts: { apiKey?: string; version?: string } = {}) {
    this.apiKey = opts.apiKey;
    this.version = opts.version ?? '1.18.0';
  }

  get url(): string {
    const addr = this.server?.address() as AddressInfo | null;
    if (!addr) throw new Error('test double not started');
    return `http://127.0.0.1:${addr.port}`;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) this.sendError(res, e instanceof HttpError ? e.status : 500, e instanceof Error ? e.message : String(e));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    for (const r of this.stalled) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }

  // ---------- helpers for tests (direct state access, no HTTP) ----------

  /** Creates a collection as `PUT /collections/{name}` would, plus payload indexes and points. */
  seedCollection(name: string, create: Schemas['CreateCollection'], opts: { indexes?: Record<string, Schemas['PayloadFieldSchema']>; points?: Schemas['PointStruct'][] } = {}): void {
    this.createCollection(name, create);
    for (const [field, schema] of Object.entries(opts.indexes ?? {})) this.createIndex(name, { field_name: field, field_schema: schema });
    if (opts.points) this.upsert(name, opts.points);
  }

  /** Full state of a collection: `GET /collections/{name}` info and every point sorted by id. */
  dumpCollection(name: string): { info: Schemas['CollectionInfo']; points: StoredPoint[] } | undefined {
    const c = this.collections.get(name);
    if (!c) return undefined;
    return { info: this.info(c), points: this.sortedPoints(c).map((p) => clone(p)) };
  }

  /** Every file in the collection's snapshot folder (also when the collection itself is gone). */
  serverSnapshotNames(collection: string): string[] {
    return [...(this.snapshots.get(collection)?.keys() ?? [])];
  }

  /** Makes `GET /cluster` report distributed mode with `peers` peers (src/actix/api/cluster_api.rs). */
  setDistributed(peers: number): void {
    this.cluster = {
      status: 'enabled',
      peer_id: 1,
      peers: Object.fromEntries(Array.from({ length: peers }, (_, i) => [String(i + 1), { uri: `http://peer-${i + 1}:6335/` }])),
      raft_info: { term: 1, commit: 10, pending_operations: 0, leader: 1, role: 'Leader', is_voter: true },
      consensus_thread_status: { consensus_thread_status: 'working', last_update: '2025-01-01T00:00:00Z' },
      message_send_failures: {},
    };
  }

  /** A snapshot file's bytes (tests check it is a tar archive). */
  snapshotBytes(collection: string, name: string): Buffer | undefined {
    return this.snapshots.get(collection)?.get(name)?.bytes;
  }

  /** Resolves an alias the way the server does for collection look-ups (toc resolve_name). */
  private resolve(name: string): string {
    return this.collections.has(name) ? name : (this.aliases.get(name) ?? name);
  }

  // ---------- HTTP ----------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    const method = (req.method ?? 'GET').toUpperCase();
    const path = url.pathname;
    this.requests.push({ method, path, query: url.search, headers: req.headers, contentType: req.headers['content-type'] });
    const body = await readBody(req);

    // src/actix/mod.rs: `/`, `/healthz`, `/readyz*`, `/livez*` are whitelisted from the API key check.
    const whitelisted = path === '/' || path === '/healthz' || path.startsWith('/readyz') || path.startsWith('/livez');
    if (this.apiKey !== undefined && !whitelisted) {
      const key = req.headers['api-key'];
      const bearer = req.headers.authorization?.replace(/^Bearer\s+/i, '');
      if (key !== this.apiKey && bearer !== this.apiKey) {
        // src/actix/auth.rs: `HttpResponse::Unauthorized().body(e)` — the message as a plain body, not
        // JSON, and without a content-type (actix's HttpResponseBuilder::body sets none).
        // Messages from src/common/auth/mod.rs (AuthKeys::validate_request).
        const text = key === undefined && bearer === undefined ? 'Must provide an API key or an Authorization bearer token' : 'Invalid API key or JWT';
        res.writeHead(401, { 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
    }
    const delay = this.faults.delay;
    if (delay && delay.times > 0 && (!delay.method || delay.method === method) && delay.path.test(path)) {
      delay.times--;
      await new Promise((r) => setTimeout(r, delay.ms));
    }
    const fail = this.faults.failStatus;
    if (fail && fail.times > 0 && (!fail.method || fail.method === method) && fail.path.test(path)) {
      fail.times--;
      this.sendError(res, fail.status, `Service internal error: simulated HTTP ${fail.status}`);
      return;
    }

    const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
    const json = (): unknown => {
      if (body.length === 0) return {};
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new HttpError(400, 'Format error in JSON body');
      }
    };

    if (seg.length === 0 && method === 'GET') return this.ok(res, 'root', { title: 'qdrant - vector search engine (TEST DOUBLE)', version: this.version, commit: null });
    // src/actix/api/cluster_api.rs: `GET /cluster` — {status: "disabled"} on a single node.
    if (seg.length === 1 && seg[0] === 'cluster' && method === 'GET') return this.ok(res, 'clusterStatus', { result: clone(this.cluster), status: 'ok', time: 0.0001 });
    // src/actix/api/collections_api.rs (GET /aliases)
    if (seg.length === 1 && seg[0] === 'aliases' && method === 'GET') {
      return this.ok(res, 'getCollectionsAliases', {
        result: { aliases: [...this.aliases].sort().map(([alias_name, collection_name]) => ({ alias_name, collection_name })) },
        status: 'ok',
        time: 0.0001,
      });
    }
    // src/actix/api/service_api.rs `GET /telemetry`; snapshot telemetry from details level 2 on
    // (src/common/telemetry_ops/collections_telemetry.rs), one entry per collection that ever had a
    // snapshot recovery (lib/storage/src/content_manager/toc/telemetry.rs).
    if (seg.length === 1 && seg[0] === 'telemetry' && method === 'GET') {
      const level = Number(url.searchParams.get('details_level') ?? 0);
      const snapshots = [...this.runningRecoveries].map(([id, n]) => ({ id, running_snapshots: 0, running_snapshot_recovery: n, total_snapshot_creations: 0 }));
      return this.ok(res, 'telemetry', {
        result: { id: 'test-double', collections: { number_of_collections: this.collections.size, ...(level >= 2 ? { snapshots } : {}) } },
        status: 'ok',
        time: 0.0001,
      });
    }
    if (seg[0] !== 'collections') throw new HttpError(404, `Not found: ${path}`);
    if (seg.length === 2 && seg[1] === 'aliases' && method === 'POST') {
      this.aliasActions((json() as Schemas['ChangeAliasesOperation']).actions);
      return this.ok(res, 'updateAliases', { result: true, status: 'ok', time: 0.0001 });
    }
    if (seg.length === 1 && method === 'GET') {
      return this.ok(res, 'getCollections', { result: { collections: [...this.collections.keys()].sort().map((name) => ({ name })) }, status: 'ok', time: 0.0001 });
    }
    // Aliases resolve for look-ups and data operations, not for create/delete (toc resolve_name).
    const name = seg.length === 2 && (method === 'PUT' || method === 'DELETE') ? seg[1] : this.resolve(seg[1]);
    if (seg.length === 3 && seg[2] === 'aliases' && method === 'GET') {
      this.need(name);
      return this.ok(res, 'getCollectionAliases', {
        result: {
          aliases: [...this.aliases]
            .filter(([, c]) => c === name)
            .sort()
            .map(([alias_name, collection_name]) => ({ alias_name, collection_name })),
        },
        status: 'ok',
        time: 0.0001,
      });
    }
    if (seg.length === 3 && seg[2] === 'cluster' && method === 'GET') {
      const c = this.need(name);
      const shards = c.config.params.shard_number ?? 1;
      const remote = this.remoteShards.get(name) ?? [];
      const local = Array.from({ length: shards }, (_, i) => i).filter((i) => !remote.some((r) => r.shard_id === i));
      return this.ok(res, 'collectionClusterInfo', {
        result: {
          peer_id: 1,
          shard_count: shards,
          local_shards: local.map((shard_id) => ({ shard_id, points_count: Math.round(c.points.size / Math.max(1, local.length)), state: c.shardState ?? 'Active' })),
          remote_shards: clone(remote),
          shard_transfers: [],
        },
        status: 'ok',
        time: 0.0001,
      });
    }
    if (seg.length === 2) {
      if (method === 'GET') return this.ok(res, 'getCollection', { result: this.info(this.need(name)), status: 'ok', time: 0.0001 });
      if (method === 'PUT') {
        this.createCollection(name, json() as Schemas['CreateCollection']);
        return this.ok(res, 'createCollection', { result: true, status: 'ok', time: 0.0001 });
      }
      if (method === 'PATCH') {
        this.updateCollection(name, json() as Schemas['UpdateCollection']);
        return this.ok(res, 'updateCollection', { result: true, status: 'ok', time: 0.0001 });
      }
      if (method === 'DELETE') {
        // The snapshot folder is not removed with the collection (toc/collection_meta_ops.rs delete_collection); aliases are.
        const existed = this.collections.delete(name);
        for (const [a, c] of [...this.aliases]) if (c === name) this.aliases.delete(a);
        return this.ok(res, 'deleteCollection', { result: existed, status: 'ok', time: 0.0001 });
      }
    }
    if (seg.length === 3 && seg[2] === 'exists' && method === 'GET') {
      return this.ok(res, 'collectionExists', { result: { exists: this.collections.has(name) }, status: 'ok', time: 0.0001 });
    }
    if (seg.length === 3 && seg[2] === 'index' && method === 'PUT') {
      this.createIndex(name, json() as Schemas['CreateFieldIndex']);
      return this.ok(res, 'createFieldIndex', { result: { operation_id: ++this.opSeq, status: 'completed' }, status: 'ok', time: 0.0001 });
    }
    if (seg[2] === 'snapshots') {
      if (seg.length === 3 && method === 'POST') {
        this.need(name);
        return this.timeOrAccept(res, url, async () => this.createSnapshot(name));
      }
      if (seg.length === 3 && method === 'GET') {
        this.need(name); // src/common/collections.rs do_list_snapshots: toc.get_collection first (404 when missing)
        // lib/collection/src/common/snapshots_manager.rs list_snapshots: only files ending in `.snapshot` are listed.
        const listed = [...(this.snapshots.get(name)?.values() ?? [])].filter((s) => s.description.name.endsWith('.snapshot'));
        return this.ok(res, 'listSnapshots', { result: listed.map((s) => s.description), status: 'ok', time: 0.0001 });
      }
      if (seg.length === 4 && seg[3] === 'upload' && method === 'POST') return this.upload(req, res, name, url, body);
      if (seg.length === 4 && seg[3] === 'recover' && method === 'PUT') {
        const rq = json() as Schemas['SnapshotRecover'];
        const m = /\/collections\/([^/]+)\/snapshots\/([^/?]+)$/.exec(new URL(rq.location, 'http://x').pathname);
        const snap = m ? this.snapshots.get(decodeURIComponent(m[1]))?.get(decodeURIComponent(m[2])) : undefined;
        if (!snap) throw new HttpError(400, `Bad request: snapshot location ${rq.location} is not a snapshot on this server`);
        return this.timeOrAccept(res, url, async () => {
          await this.recover(name, snap.bytes, rq.checksum ?? undefined);
          return true;
        });
      }
      if (seg.length === 4 && method === 'GET') {
        this.need(name); // snapshot_api.rs do_get_snapshot: toc.get_collection first
        return this.download(res, name, seg[3]);
      }
      if (seg.length === 4 && method === 'DELETE') {
        return this.timeOrAccept(res, url, async () => {
          this.need(name); // lib/storage/src/content_manager/snapshots/mod.rs do_delete_collection_snapshot: toc.get_collection first
          const snaps = this.snapshots.get(name);
          if (!snaps?.delete(seg[3])) throw new HttpError(404, `Not found: Snapshot ${seg[3]} not found`);
          return true;
        });
      }
    }
    if (seg[2] === 'points') {
      if (seg.length === 3 && method === 'PUT') {
        const rq = json() as Schemas['PointInsertOperations'];
        if (!('points' in rq)) throw new HttpError(400, 'Bad request: the test double only supports the points-list form of upsert');
        this.upsert(name, rq.points);
        return this.ok(res, 'upsertPoints', { result: { operation_id: ++this.opSeq, status: 'completed' }, status: 'ok', time: 0.0001 });
      }
      if (seg.length === 4 && seg[3] === 'scroll' && method === 'POST') {
        return this.ok(res, 'scrollPoints', { result: this.scroll(name, json() as Schemas['ScrollRequest']), status: 'ok', time: 0.0001 });
      }
      if (seg.length === 4 && seg[3] === 'delete' && method === 'POST') {
        const rq = json() as Schemas['PointsSelector'];
        if (!('points' in rq)) throw new HttpError(400, 'Bad request: the test double only supports deleting a list of point ids');
        const c = this.need(name);
        for (const id of rq.points) c.points.delete(pointKey(id));
        return this.ok(res, 'deletePoints', { result: { operation_id: ++this.opSeq, status: 'completed' }, status: 'ok', time: 0.0001 });
      }
      if (seg.length === 4 && seg[3] === 'count' && method === 'POST') {
        const rq = json() as Schemas['CountRequest'];
        if (rq.filter) throw new HttpError(400, 'Bad request: the test double does not support count filters');
        return this.ok(res, 'countPoints', { result: { count: this.need(name).points.size }, status: 'ok', time: 0.0001 });
      }
    }
    throw new HttpError(404, `Not found: ${method} ${path} is not implemented by the test double`);
  }

  /** Sends a 200 JSON body typed as the OpenAPI 200 response of operation `op`. */
  private ok<K extends QdrantOperation>(res: http.ServerResponse, op: K, body: QdrantOkBody<K>): void {
    void op;
    const text = JSON.stringify(body);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private sendError(res: http.ServerResponse, status: number, error: string): void {
    const body: Schemas['ErrorResponse'] = { status: { error }, time: 0.0001 };
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private need(name: string): StoredCollection {
    const c = this.collections.get(name);
    if (!c) throw new HttpError(404, `Not found: Collection \`${name}\` doesn't exist!`);
    return c;
  }

  private info(c: StoredCollection): Schemas['CollectionInfo'] {
    const payload_schema: Schemas['CollectionInfo']['payload_schema'] = {};
    for (const [field, idx] of Object.entries(c.payload_schema)) {
      let n = 0;
      for (const p of c.points.values()) if (p.payload && field in p.payload) n++;
      payload_schema[field] = { data_type: idx.data_type, ...(idx.params ? { params: clone(idx.params) } : {}), points: n };
    }
    return {
      status: 'green',
      optimizer_status: 'ok',
      indexed_vectors_count: 0,
      points_count: c.points.size,
      segments_count: 1,
      config: clone(c.config),
      payload_schema,
    };
  }

  /** toc/collection_meta_ops.rs update_aliases: create (overwrites an existing alias), delete, rename. */
  private aliasActions(actions: Schemas['AliasOperations'][]): void {
    for (const a of actions) {
      if ('create_alias' in a) {
        if (!this.collections.has(a.create_alias.collection_name)) throw new HttpError(404, `Not found: Collection \`${a.create_alias.collection_name}\` doesn't exist!`);
        // collections_ops.rs validate_collection_not_exists: StorageError::AlreadyExists → 409 (src/actix/helpers.rs).
        if (this.collections.has(a.create_alias.alias_name)) throw new HttpError(409, `Wrong input: Collection \`${a.create_alias.alias_name}\` already exists!`);
        this.aliases.set(a.create_alias.alias_name, a.create_alias.collection_name);
      } else if ('delete_alias' in a) {
        if (!this.aliases.delete(a.delete_alias.alias_name)) throw new HttpError(404, `Not found: Alias ${a.delete_alias.alias_name} does not exists!`);
      } else if ('rename_alias' in a) {
        const c = this.aliases.get(a.rename_alias.old_alias_name);
        if (c === undefined) throw new HttpError(404, `Not found: Alias ${a.rename_alias.old_alias_name} does not exists!`);
        this.aliases.delete(a.rename_alias.old_alias_name);
        this.aliases.set(a.rename_alias.new_alias_name, c);
      }
    }
  }

  private createCollection(name: string, rq: Schemas['CreateCollection']): void {
    if (!/^[A-Za-z0-9_.-]{1,255}$/.test(name)) throw new HttpError(400, `Wrong input: Collection name \`${name}\` is not allowed`);
    // lib/storage/src/content_manager/collections_ops.rs: StorageError::AlreadyExists → 409 Conflict (src/actix/helpers.rs).
    if (this.collections.has(name)) throw new HttpError(409, `Wrong input: Collection \`${name}\` already exists!`);
    const checkParams = (p: unknown, where: string) => {
      if (!isVectorParams(p) || !(p.size > 0) || !DISTANCES.has(p.distance)) throw new HttpError(400, `Wrong input: invalid vector params for ${where}`);
    };
    const vectors = rq.vectors ?? {};
    if (isVectorParams(vectors)) checkParams(vectors, 'the unnamed vector');
    else for (const [n, p] of Object.entries(vectors)) checkParams(p, `vector ${n}`);
    const hnsw: Schemas['HnswConfig'] = { m: 16, ef_construct: 100, full_scan_threshold: 10000, max_indexing_threads: 0, on_disk: false };
    for (const [k, v] of Object.entries(rq.hnsw_config ?? {})) if (v !== null && v !== undefined) (hnsw as Record<string, unknown>)[k] = v;
    const params: Schemas['CollectionParams'] = {
      vectors: clone(vectors) as Schemas['VectorsConfig'],
      shard_number: rq.shard_number ?? 1,
      replication_factor: rq.replication_factor ?? 1,
      write_consistency_factor: rq.write_consistency_factor ?? 1,
      on_disk_payload: rq.on_disk_payload ?? true,
    };
    // CreateCollection has no read_fan_out_factor/read_fan_out_delay_ms (collection_meta_ops.rs): only PATCH sets them.
    const payloadStorage = (rq as { payload?: unknown }).payload;
    if (payloadStorage !== undefined && payloadStorage !== null) (params as Record<string, unknown>).payload = clone(payloadStorage);
    if (rq.sharding_method === 'custom') params.sharding_method = 'custom';
    if (rq.sparse_vectors && Object.keys(rq.sparse_vectors).length) params.sparse_vectors = clone(rq.sparse_vectors);
    this.collections.set(name, {
      config: {
        params,
        hnsw_config: hnsw,
        // Defaults and merge of the *_config diffs as lib/collection/src/config.rs / operations/config_diff.rs.
        optimizer_config: merged(
          {
            deleted_threshold: 0.2,
            vacuum_min_vector_number: 1000,
            default_segment_number: 0,
            max_segment_size: null,
            memmap_threshold: null,
            indexing_threshold: 10000,
            flush_interval_sec: 5,
            max_optimization_threads: null,
          },
          rq.optimizers_config,
        ),
        wal_config: merged({ wal_capacity_mb: 32, wal_segments_ahead: 0 }, rq.wal_config),
        quantization_config: rq.quantization_config ? clone(rq.quantization_config) : null,
        strict_mode_config: merged({ enabled: false }, rq.strict_mode_config),
        ...(rq.metadata && Object.keys(rq.metadata).length ? { metadata: clone(rq.metadata) } : {}),
      },
      payload_schema: {},
      points: new Map(),
    });
  }

  /**
   * `PATCH /collections/{c}` (src/actix/api/collections_api.rs update_collection): params diff
   * (lib/collection/src/operations/config_diff.rs CollectionParamsDiff) and config diffs merged in.
   */
  private updateCollection(name: string, rq: Schemas['UpdateCollection']): void {
    const c = this.need(name);
    const p = c.config.params as Record<string, unknown>;
    for (const [k, v] of Object.entries((rq.params ?? {}) as Record<string, unknown>)) {
      if (v === null || v === undefined) continue;
      if (!['replication_factor', 'write_consistency_factor', 'read_fan_out_factor', 'read_fan_out_delay_ms', 'on_disk_payload', 'payload'].includes(k))
        throw new HttpError(400, `Format error in JSON body: unknown field \`${k}\``);
      p[k] = clone(v);
    }
    if (rq.hnsw_config) c.config.hnsw_config = merged(c.config.hnsw_config, rq.hnsw_config);
    if (rq.optimizers_config) c.config.optimizer_config = merged(c.config.optimizer_config, rq.optimizers_config);
    if (rq.strict_mode_config) c.config.strict_mode_config = merged(c.config.strict_mode_config ?? {}, rq.strict_mode_config);
    if (rq.metadata) c.config.metadata = { ...(c.config.metadata ?? {}), ...clone(rq.metadata) };
  }

  /** `PUT /collections/{c}/index` (src/actix/api/update_api.rs create_field_index): a keyword type or a params object. */
  private createIndex(name: string, rq: Schemas['CreateFieldIndex']): void {
    const c = this.need(name);
    const schema = rq.field_schema;
    if (!rq.field_name || schema === undefined || schema === null) throw new HttpError(400, 'Wrong input: field_name and field_schema are required');
    if (typeof schema === 'string') c.payload_schema[rq.field_name] = { data_type: schema };
    else c.payload_schema[rq.field_name] = { data_type: (schema as { type: Schemas['PayloadSchemaType'] }).type, params: clone(schema as Schemas['PayloadSchemaParams']) };
  }

  /** Vector checks of an upsert; messages after lib/segment/src/common/operation_error.rs (WrongVectorDimension, VectorNameNotExists). */
  private checkVector(c: StoredCollection, v: unknown, id: PointId): void {
    const vectors = c.config.params.vectors ?? {};
    const sparse = c.config.params.sparse_vectors ?? {};
    const dense = (p: Schemas['VectorParams'], val: unknown, label: string) => {
      if (p.multivector_config) {
        if (!Array.isArray(val) || !val.every((row) => Array.isArray(row) && row.length === p.size))
          throw new HttpError(400, `Wrong input: Vector dimension error for ${label} of point ${id}: expected multivector of dim ${p.size}`);
      } else if (!Array.isArray(val) || val.length !== p.size || !val.every((x) => typeof x === 'number')) {
        throw new HttpError(400, `Wrong input: Vector dimension error for ${label} of point ${id}: expected dim: ${p.size}, got ${Array.isArray(val) ? val.length : typeof val}`);
      }
    };
    if (isVectorParams(vectors)) return dense(vectors, v, 'the unnamed vector');
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, `Wrong input: point ${id} must give named vectors`);
    for (const [n, val] of Object.entries(v)) {
      const p = (vectors as Record<string, Schemas['VectorParams'] | undefined>)[n];
      if (p) dense(p, val, `vector ${n}`);
      else if (n in sparse) {
        const s = val as Schemas['SparseVector'];
        if (!Array.isArray(s?.indices) || !Array.isArray(s?.values) || s.indices.length !== s.values.length) throw new HttpError(400, `Wrong input: invalid sparse vector ${n} of point ${id}`);
      } else throw new HttpError(400, `Wrong input: Not existing vector name error: ${n}`);
    }
  }

  private upsert(name: string, points: Schemas['PointStruct'][]): void {
    const c = this.need(name);
    for (const p of points) {
      if (!(typeof p.id === 'number' || typeof p.id === 'string')) throw new HttpError(400, 'Wrong input: invalid point id');
      this.checkVector(c, p.vector, p.id);
    }
    for (const p of points) {
      c.points.set(pointKey(p.id), { id: p.id, vector: clone(p.vector) as Schemas['VectorStructOutput'], payload: clone((p.payload ?? {}) as Schemas['Payload']) });
    }
  }

  private sortedPoints(c: StoredCollection): StoredPoint[] {
    return [...c.points.values()].sort((a, b) => comparePointIds(a.id, b.id));
  }

  /** `POST /collections/{c}/points/scroll`: points ordered by id, integer ids before UUIDs (lib/segment/src/types.rs ExtendedPointId order). */
  private scroll(name: string, rq: Schemas['ScrollRequest']): Schemas['ScrollResult'] {
    const c = this.need(name);
    if (rq.filter) throw new HttpError(400, 'Bad request: the test double does not support scroll filters');
    const limit = rq.limit ?? 10;
    let all = this.sortedPoints(c);
    const offset = rq.offset as PointId | null | undefined;
    if (offset !== undefined && offset !== null) all = all.filter((p) => comparePointIds(p.id, offset) >= 0);
    const page = all.slice(0, limit);
    const withVector = rq.with_vector ?? false;
    const withPayload = rq.with_payload ?? true;
    const points: Schemas['Record'][] = page.map((p) => {
      const r: Schemas['Record'] = { id: p.id };
      if (withPayload !== false) r.payload = clone(p.payload);
      if (withVector === true) r.vector = clone(p.vector);
      else if (Array.isArray(withVector)) r.vector = Object.fromEntries(Object.entries(p.vector).filter(([k]) => withVector.includes(k))) as Schemas['VectorStructOutput'];
      return r;
    });
    return { points, next_page_offset: all.length > limit ? all[limit].id : null };
  }

  /**
   * A tar archive like Qdrant's collection snapshot (lib/collection/src/collection/snapshots.rs):
   * `config.json` (collection config), `payload_index.json` (payload index schema), and per shard
   * a directory; here one `0/points.json` plus `0/binary.bin` holding all 256 byte values.
   */
  private encodeSnapshot(c: StoredCollection): Buffer {
    return tarPack([
      ['config.json', Buffer.from(JSON.stringify(c.config), 'utf8')],
      ['payload_index.json', Buffer.from(JSON.stringify({ schema: c.payload_schema }), 'utf8')],
      ['0/binary.bin', BINARY_BLOCK],
      ['0/points.json', Buffer.from(JSON.stringify(this.sortedPoints(c)), 'utf8')],
    ]);
  }

  private decodeSnapshot(bytes: Buffer): StoredCollection {
    const bad = (why: string) => new HttpError(400, `Bad request: Snapshot file is not a valid snapshot archive: ${why}`);
    let files: Map<string, Buffer>;
    try {
      files = tarUnpack(bytes);
    } catch (e) {
      throw bad((e as Error).message);
    }
    const need = (n: string) => {
      const f = files.get(n);
      if (!f) throw bad(`${n} missing`);
      return f;
    };
    if (!need('0/binary.bin').equals(BINARY_BLOCK)) throw bad('shard data damaged');
    try {
      const config = JSON.parse(need('config.json').toString('utf8')) as Schemas['CollectionConfig'];
      const payload_schema = (JSON.parse(need('payload_index.json').toString('utf8')) as { schema: Record<string, StoredIndex> }).schema;
      const points = JSON.parse(need('0/points.json').toString('utf8')) as StoredPoint[];
      return { config, payload_schema, points: new Map(points.map((p) => [pointKey(p.id), p])) };
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw bad('unreadable JSON');
    }
  }

  private createSnapshot(name: string): Schemas['SnapshotDescription'] {
    const c = this.need(name);
    const bytes = this.encodeSnapshot(c);
    // A fake clock one second further per snapshot, so names never collide.
    const iso = new Date(Date.UTC(2025, 0, 1, 0, 0, ++this.seq)).toISOString().replace(/\.\d+Z$/, '');
    // lib/collection/src/collection/snapshots.rs: `{collection}-{peer_id}-{%Y-%m-%d-%H-%M-%S}.snapshot`.
    const snapName = `${name}-${PEER_ID}-${iso.replace(/[T:]/g, '-')}.snapshot`;
    const description: Schemas['SnapshotDescription'] = {
      name: snapName,
      creation_time: iso,
      size: bytes.length,
      checksum: createHash('sha256').update(bytes).digest('hex'),
    };
    if (!this.snapshots.has(name)) this.snapshots.set(name, new Map());
    this.snapshots.get(name)!.set(snapName, { bytes, description });
    return description;
  }

  private download(res: http.ServerResponse, name: string, snapName: string): void {
    const snap = this.snapshots.get(name)?.get(snapName);
    if (!snap) throw new HttpError(404, `Not found: Snapshot ${snapName} not found`);
    let bytes = snap.bytes;
    const corrupt = this.faults.corruptDownload;
    if (corrupt && corrupt.times > 0) {
      corrupt.times--;
      bytes = Buffer.from(bytes);
      bytes[bytes.length - 2] ^= 0xff;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'content-disposition': `attachment; filename="${snapName}"` });
    const drop = this.faults.downloadDropAfterBytes;
    if (drop && drop.times > 0) {
      drop.times--;
      res.write(bytes.subarray(0, drop.bytes), () => setTimeout(() => res.destroy(), 10));
      return;
    }
    const stall = this.faults.downloadStall;
    if (stall && stall.times > 0) {
      stall.times--;
      this.stalled.add(res);
      res.write(bytes.subarray(0, stall.bytes));
      res.on('close', () => this.stalled.delete(res));
      return;
    }
    // Several chunks, so streaming and hashing see more than one piece.
    const step = Math.max(1, Math.ceil(bytes.length / 4));
    for (let i = 0; i < bytes.length; i += step) res.write(bytes.subarray(i, i + step));
    res.end();
  }

  /**
   * Recovery as lib/storage/src/content_manager/snapshots/recover.rs does it: a missing collection
   * is created from the snapshot's config and payload indexes; an existing one keeps its own
   * config and payload indexes and must have equal vector params and shard number (else 400);
   * then the shard data (points) is replaced. Shards are in ManualRecovery meanwhile.
   */
  private async recover(name: string, bytes: Buffer, checksum: string | undefined): Promise<void> {
    // recover.rs measures the whole recovery as `running_snapshot_recovery` of the collection
    // (lib/storage/src/content_manager/toc/telemetry.rs), from before the download to the end.
    this.runningRecoveries.set(name, (this.runningRecoveries.get(name) ?? 0) + 1);
    try {
      await this.recoverInner(name, bytes, checksum);
    } finally {
      this.runningRecoveries.set(name, this.runningRecoveries.get(name)! - 1);
    }
  }

  private async recoverInner(name: string, bytes: Buffer, checksum: string | undefined): Promise<void> {
    const slow = this.faults.slowRecovery;
    const isSlow = !!slow && slow.times > 0;
    if (isSlow) slow.times--;
    // Downloading and unpacking the tar (Collection::restore_snapshot) comes first; the shards keep their state meanwhile.
    if (isSlow && slow.unpackMs) await new Promise((r) => setTimeout(r, slow.unpackMs));
    if (checksum) {
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== checksum.toLowerCase()) throw new HttpError(400, `Wrong input: Snapshot checksum mismatch: expected ${checksum}, got ${actual}`);
    }
    const snap = this.decodeSnapshot(bytes);
    let target = this.collections.get(name);
    if (!target) {
      // A missing collection is created through the normal create operation from the snapshot's
      // config (lib/storage/src/content_manager/collection_meta_ops.rs `From<CollectionConfigInternal>
      // for CreateCollection`), which has no read fan-out fields: `read_fan_out_factor` and
      // `read_fan_out_delay_ms` are dropped; then each payload index is created.
      this.createCollection(name, createFromConfig(snap.config));
      target = this.collections.get(name)!;
      for (const [field, idx] of Object.entries(snap.payload_schema)) target.payload_schema[field] = clone(idx);
    }
    if (canonical(snap.config.params.vectors) !== canonical(target.config.params.vectors)) {
      throw new HttpError(
        400,
        `Wrong input: Snapshot is not compatible with existing collection: Collection vectors: ${JSON.stringify(target.config.params.vectors)} Snapshot Vectors: ${JSON.stringify(snap.config.params.vectors)}`,
      );
    }
    if ((snap.config.params.shard_number ?? 1) !== (target.config.params.shard_number ?? 1)) {
      throw new HttpError(
        400,
        `Wrong input: Snapshot is not compatible with existing collection: Collection shard number: ${target.config.params.shard_number} Snapshot shard number: ${snap.config.params.shard_number}`,
      );
    }
    const fault = this.faults.recoverFailure;
    if (fault && fault.times > 0) {
      fault.times--;
      // Fail half-way, leaving damage behind, as a crashed recovery could.
      const keys = [...target.points.keys()];
      for (const k of keys.slice(0, Math.ceil(keys.length / 2))) target.points.delete(k);
      if (!keys.length) for (const [k, p] of [...snap.points].slice(0, Math.ceil(snap.points.size / 2))) target.points.set(k, p);
      target.config.hnsw_config.m += 1;
      target.shardState = 'Dead';
      throw new HttpError(500, 'Service internal error: simulated failure during snapshot recovery (test double fault)');
    }
    if (isSlow) {
      target.shardState = 'ManualRecovery';
      await new Promise((r) => setTimeout(r, slow.ms));
    }
    target.points = snap.points;
    target.shardState = undefined;
  }

  /**
   * src/actix/helpers.rs `time_or_accept`: the operation runs in a spawned task, so it completes even
   * when the client gives up; `wait=true` (the default) answers with its outcome, `wait=false`
   * answers `202 {"result": null, "status": "accepted"}` at once and only logs a failure.
   */
  private async timeOrAccept(res: http.ServerResponse, url: URL, op: () => Promise<unknown>): Promise<void> {
    const wait = url.searchParams.get('wait');
    // `wait: Option<bool>`: anything else fails to deserialize, 400 (src/actix/mod.rs validation_error_handler).
    if (wait !== null && wait !== 'true' && wait !== 'false') throw new HttpError(400, `Deserialize error in query parameters: wait: provided string was not \`true\` or \`false\``);
    const task = op();
    if (wait === 'false') {
      task.catch(() => undefined);
      const text = JSON.stringify({ result: null, status: 'accepted', time: 0.0001 });
      res.writeHead(202, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    const result = await task;
    const text = JSON.stringify({ result, status: 'ok', time: 0.0001 });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async upload(req: http.IncomingMessage, res: http.ServerResponse, name: string, url: URL, body: Buffer): Promise<void> {
    const ct = req.headers['content-type'] ?? '';
    if (!ct.startsWith('multipart/form-data')) throw new HttpError(400, `Bad request: expected multipart/form-data with a 'snapshot' file, got content-type ${ct || '(none)'}`);
    const priority = url.searchParams.get('priority');
    // SnapshotPriority (lib/collection/src/operations/snapshot_ops.rs); an unknown value fails to deserialize: 400 (src/actix/mod.rs).
    if (priority !== null && !['no_sync', 'snapshot', 'replica'].includes(priority)) throw new HttpError(400, `Deserialize error in query parameters: unknown variant \`${priority}\``);
    // Parse the multipart body with the platform's own parser (Fetch API Response.formData()).
    let form: FormData;
    try {
      form = await new Response(body, { headers: { 'content-type': ct } }).formData();
    } catch {
      throw new HttpError(400, 'Bad request: malformed multipart body');
    }
    const file = form.get('snapshot');
    if (!file || typeof file === 'string') throw new HttpError(400, "Bad request: multipart field 'snapshot' with a file is required");
    const bytes = Buffer.from(await file.arrayBuffer());
    const checksum = url.searchParams.get('checksum') ?? undefined;
    // snapshot_api.rs SnapshotUploadingParam: `checksum` must be a SHA-256 hex string (validate_sha256_hash);
    // a failed validation is 422 (src/actix/mod.rs validation_error_handler).
    if (checksum !== undefined && !/^[0-9a-fA-F]{64}$/.test(checksum)) throw new HttpError(422, `Validation error in query parameters: [checksum]: invalid SHA256 hash`);
    // snapshot_api.rs upload_snapshot: checksum check, save and recovery run as one spawned task (time_or_accept).
    return this.timeOrAccept(res, url, async () => {
      if (checksum) {
        // The checksum is checked before the file is kept (StorageError::ChecksumMismatch → 400, errors.rs).
        const actual = createHash('sha256').update(bytes).digest('hex');
        if (actual !== checksum.toLowerCase()) throw new HttpError(400, `Checksum mismatch: expected ${actual}, actual ${checksum}`);
      }
      // do_save_uploaded_snapshot: the file is moved into the collection's snapshot folder under the
      // (sanitised) file name sent, and stays there after the recovery (download.rs: a file:// location
      // is used in place as MaybeTempPath::Persistent, never removed).
      const fileName = (file as File).name?.split(/[\\/]/).pop() || `${randomUUID()}`;
      if (!this.snapshots.has(name)) this.snapshots.set(name, new Map());
      this.snapshots.get(name)!.set(fileName, {
        bytes,
        // lib/collection/src/operations/snapshot_ops.rs get_snapshot_description: the checksum comes from a
        // `<name>.checksum` file, which only created snapshots have; an uploaded file has none.
        description: { name: fileName, creation_time: null, size: bytes.length, checksum: null },
      });
      await this.recover(name, bytes, undefined);
      return true;
    });
  }
}

/**
 * The create request Qdrant derives from a snapshot's config to create a missing collection
 * (lib/storage/src/content_manager/collection_meta_ops.rs `impl From<CollectionConfigInternal> for
 * CreateCollection`): every setting except `read_fan_out_factor` and `read_fan_out_delay_ms`.
 */
function createFromConfig(config: Schemas['CollectionConfig']): Schemas['CreateCollection'] {
  const p = config.params;
  return clone({
    vectors: p.vectors ?? {},
    shard_number: p.shard_number,
    sharding_method: p.sharding_method,
    replication_factor: p.replication_factor,
    write_consistency_factor: p.write_consistency_factor,
    on_disk_payload: p.on_disk_payload,
    ...((p as { payload?: unknown }).payload ? { payload: (p as { payload?: unknown }).payload } : {}),
    sparse_vectors: p.sparse_vectors,
    hnsw_config: config.hnsw_config,
    wal_config: config.wal_config,
    optimizers_config: config.optimizer_config as Schemas['OptimizersConfigDiff'],
    quantization_config: config.quantization_config,
    strict_mode_config: config.strict_mode_config as Schemas['StrictModeConfig'] | undefined,
    metadata: config.metadata,
  } as Schemas['CreateCollection']);
}

function merged<T extends object>(defaults: T, diff: unknown): T {
  const out = { ...defaults } as Record<string, unknown>;
  if (diff && typeof diff === 'object') for (const [k, v] of Object.entries(diff)) if (v !== null && v !== undefined) out[k] = clone(v);
  return out as T;
}

function canonical(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== null && o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
