/**
 * Vector probes: recorded at backup, replayed by a restore drill.
 *
 * For every agent with archival passages, K passages are picked deterministically (seeded by the
 * agent id and the snapshot's time); each becomes a probe query = its embedding plus small seeded
 * Gaussian noise (norm ≈ 10 % of the embedding's), rounded to float32. The expected answer is the
 * top-k passage ids by brute force over the archive's own vectors, with the distance pgvector
 * computes: cosine distance (`<=>`, 1 − cos) or Euclidean (`<->`). Ties are ordered by passage id,
 * as the drill's `ORDER BY distance, id` does. The probes are stored in the archive as
 * `vault/probes.json` (encrypted with the rest when the archive is), and summarised in the
 * manifest's `probes` field.
 *
 * A backup records them while it exports (probeRecorder: the chosen embeddings are read first,
 * then every vector is compared as it is written into the archive: one pass, nothing staged).
 * probeAgent() does the same from an existing archive (three streaming passes). Memory: only the
 * probes and their running top-(k+1) are held.
 */
import { createHash } from 'node:crypto';
import { AgentVaultError } from '../core/errors';
import type { ArchiveReader, ManifestAgent } from '../format/archive';
import { readPassages } from '../format/pack';
import type { AgentVectorsContext, VectorObserver } from '../letta/export';

export const PROBES_ENTRY = 'vault/probes.json';
export const PROBES_FORMAT = 'agent-vault-probes';
export const DEFAULT_PROBES_PER_AGENT = 3;
export const DEFAULT_TOP_K = 5;
/** Absolute + relative tolerance when comparing distances (float32 arithmetic in pgvector). */
export const DISTANCE_EPSILON = 1e-4;

export type ProbeMetric = 'cosine' | 'l2';

export interface ProbeHit {
  id: string;
  distance: number;
}

export interface Probe {
  id: string;
  source_passage_id: string;
  /** base64 of the query vector, float32 little-endian, at the agent's true dimension. */
  query: string;
  top: ProbeHit[];
  /** Distance of the (k+1)-th passage, or null when there are only k: lets a reader tolerate ties at the cut. */
  next_distance: number | null;
}

export interface AgentProbes {
  agent_id: string;
  dim: number;
  /** Passages with a usable (non-null, non-zero) embedding. */
  searchable_passages: number;
  probes: Probe[];
}

export interface ProbeSet {
  format: typeof PROBES_FORMAT;
  version: 1;
  metric: ProbeMetric;
  top_k: number;
  agents: AgentProbes[];
}

/** What the manifest's `probes` field holds. */
export interface ManifestProbes {
  entry: string;
  metric: ProbeMetric;
  top_k: number;
  count: number;
  agents: number;
}

export interface ProbeOptions {
  perAgent?: number;
  topK?: number;
  metric?: ProbeMetric;
}

// ---------------------------------------------------------------------------------------------
// deterministic randomness

/** xoshiro128** seeded from a sha256 digest. */
export class SeededRandom {
  private s: Uint32Array;
  constructor(seed: string) {
    const h = createHash('sha256').update(seed).digest();
    this.s = new Uint32Array([h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]);
    if (!this.s.some((x) => x !== 0)) this.s[0] = 1;
  }
  nextU32(): number {
    const s = this.s;
    const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 2 ** 32;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Standard normal (Box-Muller). */
  gaussian(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

// ---------------------------------------------------------------------------------------------
// distances (as pgvector defines them)

export function distance(metric: ProbeMetric, a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  if (metric === 'l2') {
    let s = 0;
    for (let i = 0; i < n; i++) {
      const d = a[i] - b[i];
      s += d * d;
    }
    for (let i = n; i < a.length; i++) s += a[i] * a[i];
    for (let i = n; i < b.length; i++) s += b[i] * b[i];
    return Math.sqrt(s);
  }
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < n; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  for (let i = n; i < a.length; i++) na += a[i] * a[i];
  for (let i = n; i < b.length; i++) nb += b[i] * b[i];
  if (na === 0 || nb === 0) return NaN;
  const sim = dot / Math.sqrt(na * nb);
  return 1 - Math.max(-1, Math.min(1, sim));
}

function isZero(v: Float32Array): boolean {
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) return false;
  return true;
}

export function encodeQuery(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function decodeQuery(b64: string, dim: number, where = 'probe'): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  if (buf.length !== dim * 4) throw new AgentVaultError('probes', `${where}: query vector has ${buf.length / 4} dimensions, expected ${dim}`);
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** Keeps the best `size` hits, ordered by (distance, id). */
class TopK {
  readonly hits: ProbeHit[] = [];
  constructor(private readonly size: number) {}
  add(id: string, d: number): void {
    if (!Number.isFinite(d)) return;
    const h = this.hits;
    if (h.length === this.size) {
      const worst = h[h.length - 1];
      if (d > worst.distance || (d === worst.distance && id > worst.id)) return;
    }
    let i = h.length;
    while (i > 0 && (h[i - 1].distance > d || (h[i - 1].distance === d && h[i - 1].id > id))) i--;
    h.splice(i, 0, { id, distance: d });
    if (h.length > this.size) h.pop();
  }
}

// ---------------------------------------------------------------------------------------------
// recording

function passageId(p: Record<string, unknown>, where: string): string {
  if (typeof p.id !== 'string' || !p.id) throw new AgentVaultError('probes', `${where}: a passage has no id`);
  return p.id;
}

/**
 * Computes the probes of one agent from an open archive (three streaming passes). Returns null
 * when the agent has no passages with embeddings.
 */
export async function probeAgent(reader: ArchiveReader, agent: ManifestAgent, opts: ProbeOptions = {}): Promise<AgentProbes | null> {
  if (!agent.passages_entry || !agent.vectors_entry) return null;
  const perAgent = opts.perAgent ?? DEFAULT_PROBES_PER_AGENT;
  const k = opts.topK ?? DEFAULT_TOP_K;
  const metric = opts.metric ?? 'cosine';
  if (perAgent <= 0) return null;
  const where = `${reader.path}!${agent.passages_entry}`;

  // pass 1: which passages are searchable
  const searchable: number[] = [];
  let dim = 0;
  let i = 0;
  for await (const rec of readPassages(reader, agent)) {
    if (rec.embedding && !isZero(rec.embedding)) {
      searchable.push(i);
      dim = rec.embedding.length;
    }
    passageId(rec.passage, where);
    i++;
  }
  if (searchable.length === 0) return null;

  // deterministic choice, seeded by what is being probed
  const entrySha = reader.manifest.entries.find((e) => e.name === agent.vectors_entry)?.sha256 ?? '';
  const rng = new SeededRandom(`agent-vault-probes\u0000${agent.id}\u0000${entrySha}`);
  const pool = [...searchable];
  const chosen = new Set<number>();
  const count = Math.min(perAgent, pool.length);
  for (let n = 0; n < count; n++) {
    const j = n + rng.int(pool.length - n);
    [pool[n], pool[j]] = [pool[j], pool[n]];
    chosen.add(pool[n]);
  }

  // pass 2: the chosen embeddings → queries
  const queries: Array<{ source: string; index: number; q: Float32Array }> = [];
  i = 0;
  for await (const rec of readPassages(reader, agent)) {
    if (chosen.has(i) && rec.embedding) {
      const v = rec.embedding;
      let norm = 0;
      for (let d = 0; d < v.length; d++) norm += v[d] * v[d];
      const sigma = (0.1 * Math.sqrt(norm)) / Math.sqrt(v.length);
      const q = new Float32Array(v.length);
      for (let d = 0; d < v.length; d++) q[d] = v[d] + sigma * rng.gaussian();
      queries.push({ source: passageId(rec.passage, where), index: i, q });
    }
    i++;
  }
  queries.sort((a, b) => a.index - b.index);

  // pass 3: brute-force top-(k+1) for every query
  const tops = queries.map(() => new TopK(k + 1));
  for await (const rec of readPassages(reader, agent)) {
    if (!rec.embedding) continue;
    const id = passageId(rec.passage, where);
    for (let qi = 0; qi < queries.length; qi++) tops[qi].add(id, distance(metric, queries[qi].q, rec.embedding));
  }

  return {
    agent_id: agent.id,
    dim,
    searchable_passages: searchable.length,
    probes: queries.map((q, qi) => {
      const hits = tops[qi].hits;
      return {
        id: `probe-${qi}`,
        source_passage_id: q.source,
        query: encodeQuery(q.q),
        top: hits.slice(0, k),
        next_distance: hits.length > k ? hits[k].distance : null,
      };
    }),
  };
}

/**
 * Records an agent's probes while its vectors are exported (ExportOptions.onAgentVectors): picks
 * the probe passages among those with an embedding (seeded by the agent id and the snapshot time),
 * reads their embeddings, then keeps the top-(k+1) of every query as the vectors go by.
 * `done` receives the probes (null: no searchable passage) when the agent's vectors are written.
 */
export async function probeRecorder(ctx: AgentVectorsContext, opts: ProbeOptions, done: (p: AgentProbes | null) => void): Promise<VectorObserver | null> {
  const perAgent = opts.perAgent ?? DEFAULT_PROBES_PER_AGENT;
  const k = opts.topK ?? DEFAULT_TOP_K;
  const metric = opts.metric ?? 'cosine';
  if (perAgent <= 0) return null;
  const rng = new SeededRandom(`agent-vault-probes\u0000${ctx.agentId}\u0000${ctx.createdAt}`);
  const pool = await ctx.embeddedIds();
  // pick without repetition; a zero vector is not searchable: pick another instead
  const chosen = new Map<string, Float32Array>();
  let n = 0;
  while (chosen.size < perAgent && n < pool.length) {
    const want = Math.min(perAgent - chosen.size, pool.length - n);
    const picked: string[] = [];
    for (let i = 0; i < want; i++, n++) {
      const j = n + rng.int(pool.length - n);
      [pool[n], pool[j]] = [pool[j], pool[n]];
      picked.push(pool[n]);
    }
    const vecs = await ctx.vectors(picked);
    for (const id of picked) {
      const v = vecs.get(id);
      if (v && !isZero(v)) chosen.set(id, v);
    }
  }
  if (chosen.size === 0) {
    done(null);
    return null;
  }
  const queries = [...chosen]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([source, v]) => {
      let norm = 0;
      for (let d = 0; d < v.length; d++) norm += v[d] * v[d];
      const sigma = (0.1 * Math.sqrt(norm)) / Math.sqrt(v.length);
      const q = new Float32Array(v.length);
      for (let d = 0; d < v.length; d++) q[d] = v[d] + sigma * rng.gaussian();
      return { source, q };
    });
  const tops = queries.map(() => new TopK(k + 1));
  let searchable = 0;
  return {
    add(id: string, v: Float32Array | null): void {
      if (!v) return;
      if (!isZero(v)) searchable++;
      for (let qi = 0; qi < queries.length; qi++) tops[qi].add(id, distance(metric, queries[qi].q, v));
    },
    end(): void {
      done({
        agent_id: ctx.agentId,
        dim: ctx.dim,
        searchable_passages: searchable,
        probes: queries.map((q, qi) => {
          const hits = tops[qi].hits;
          return { id: `probe-${qi}`, source_passage_id: q.source, query: encodeQuery(q.q), top: hits.slice(0, k), next_distance: hits.length > k ? hits[k].distance : null };
        }),
      });
    },
  };
}

/** A probe set from recorded agents. */
export function probeSet(agents: AgentProbes[], opts: ProbeOptions = {}): ProbeSet {
  return { format: PROBES_FORMAT, version: 1, metric: opts.metric ?? 'cosine', top_k: opts.topK ?? DEFAULT_TOP_K, agents };
}

/** Probes of every agent of an archive. */
export async function computeProbes(reader: ArchiveReader, opts: ProbeOptions = {}): Promise<ProbeSet> {
  const agents: AgentProbes[] = [];
  for (const a of reader.manifest.agents) {
    const p = await probeAgent(reader, a, opts);
    if (p) agents.push(p);
  }
  return { format: PROBES_FORMAT, version: 1, metric: opts.metric ?? 'cosine', top_k: opts.topK ?? DEFAULT_TOP_K, agents };
}

export function summariseProbes(set: ProbeSet): ManifestProbes {
  return { entry: PROBES_ENTRY, metric: set.metric, top_k: set.top_k, count: set.agents.reduce((n, a) => n + a.probes.length, 0), agents: set.agents.length };
}

/** Reads and checks `vault/probes.json` of an archive (null when the archive has none). */
export async function readProbes(reader: ArchiveReader): Promise<ProbeSet | null> {
  if (!reader.manifest.entries.some((e) => e.name === PROBES_ENTRY)) return null;
  return checkProbeSet(await reader.readJson<ProbeSet>(PROBES_ENTRY), reader.path);
}

/** Checks a parsed `vault/probes.json` of the archive (or snapshot) `file`. */
export function checkProbeSet(v: ProbeSet, file: string): ProbeSet {
  const reader = { path: file };
  const where = `${file}!${PROBES_ENTRY}`;
  if (!v || v.format !== PROBES_FORMAT || v.version !== 1 || !Array.isArray(v.agents) || (v.metric !== 'cosine' && v.metric !== 'l2') || !Number.isInteger(v.top_k)) {
    throw new AgentVaultError('probes', `${where}: not a probe set of a known version`, { location: { file: reader.path, entry: PROBES_ENTRY } });
  }
  for (const a of v.agents) {
    if (typeof a.agent_id !== 'string' || !Number.isInteger(a.dim) || !Array.isArray(a.probes))
      throw new AgentVaultError('probes', `${where}: an agent entry is incomplete`, { location: { file: reader.path, entry: PROBES_ENTRY } });
    for (const p of a.probes) {
      if (typeof p.query !== 'string' || !Array.isArray(p.top))
        throw new AgentVaultError('probes', `${where}: probe ${String(p.id)} of ${a.agent_id} is incomplete`, { location: { file: reader.path, entry: PROBES_ENTRY } });
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// comparing

export interface ProbeComparison {
  ok: boolean;
  /** Why not, in words (empty when ok). */
  problems: string[];
}

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= DISTANCE_EPSILON * (1 + Math.abs(a));
}

/**
 * Does a search result (`got`, best first, with the database's distances) match the recorded
 * probe? The same ids in the same order, where ids may swap only among near-equal distances (and
 * at the cut only with a passage as near as the k-th); and every distance as recorded.
 */
export function compareProbe(expected: Probe, got: readonly ProbeHit[]): ProbeComparison {
  const problems: string[] = [];
  const exp = expected.top;
  if (got.length !== exp.length) problems.push(`the search returned ${got.length} passages, ${exp.length} were recorded`);
  const expDist = new Map(exp.map((h) => [h.id, h.distance]));
  const kth = exp.length ? exp[exp.length - 1].distance : 0;
  for (let i = 0; i < Math.min(got.length, exp.length); i++) {
    const g = got[i];
    const e = exp[i];
    if (!close(g.distance, e.distance)) {
      problems.push(`rank ${i + 1}: distance ${g.distance.toPrecision(6)} of ${g.id}, recorded ${e.distance.toPrecision(6)} for ${e.id}`);
      continue;
    }
    if (g.id === e.id) continue;
    const recorded = expDist.get(g.id);
    const tie = recorded !== undefined ? close(recorded, e.distance) : close(g.distance, kth) && expected.next_distance !== null && close(expected.next_distance, kth);
    if (!tie) problems.push(`rank ${i + 1}: got ${g.id}, recorded ${e.id}`);
  }
  return { ok: problems.length === 0, problems };
}

/**
 * Replays the recorded probes against the archive's own vectors (brute force, pgvector's distance):
 * what a drill's vector search checks, without a database. Vectors that were altered or swapped
 * between passages change the ids or distances and fail, naming agent and probe.
 */
export async function replayProbes(reader: ArchiveReader, set: ProbeSet): Promise<{ total: number; passed: number; failures: string[] }> {
  const failures: string[] = [];
  let total = 0;
  let passed = 0;
  const byId = new Map(reader.manifest.agents.map((a) => [a.id, a]));
  for (const ap of set.agents) {
    const agent = byId.get(ap.agent_id);
    if (!agent) {
      failures.push(`probes name agent ${ap.agent_id}, which the archive does not hold`);
      continue;
    }
    const queries = ap.probes.map((p) => decodeQuery(p.query, ap.dim, `probe ${p.id} of ${ap.agent_id}`));
    const tops = queries.map(() => new TopK(set.top_k));
    const where = `${reader.path}!${agent.passages_entry ?? ''}`;
    for await (const rec of readPassages(reader, agent)) {
      if (!rec.embedding) continue;
      const id = passageId(rec.passage, where);
      for (let qi = 0; qi < queries.length; qi++) tops[qi].add(id, distance(set.metric, queries[qi], rec.embedding));
    }
    ap.probes.forEach((p, qi) => {
      total++;
      const cmp = compareProbe(p, tops[qi].hits);
      if (cmp.ok) passed++;
      else failures.push(`agent ${agent.name ?? ap.agent_id} (${ap.agent_id}) ${p.id} (near passage ${p.source_passage_id}): ${cmp.problems.slice(0, 3).join('; ')}`);
    });
  }
  return { total, passed, failures };
}
