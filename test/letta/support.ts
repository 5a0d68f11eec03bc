/**
 * Helpers for the export/restore tests: table fingerprints, schema validators, archive reading
 * and normalisation of exported agent files for comparison.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020';
import type { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Queryable } from '../../src/db/types';
import { openArchive, type Manifest } from '../../src/format/archive';
import { getValidator } from '../../src/format/schemas';
import type { AgentFileV2 } from '../../src/format/types';
import { readVectors } from '../../src/format/vectors';
import { sharedTestPostgres } from '../helpers/global-pg';
import { REFERENCE_SCHEMA } from '../helpers/paths';

export interface TableFingerprint {
  rows: number;
  md5: string;
}

/**
 * Row count and an md5 over all rows (each row's full text, all columns, sorted) of every table in
 * the schema: equal fingerprints mean equal content.
 */
export async function tableSnapshot(db: Queryable, schema = 'letta'): Promise<Record<string, TableFingerprint>> {
  const tables = (await db.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename`, [schema])).rows.map((r) => r.tablename);
  assert.ok(tables.length >= 30, `schema ${schema} has its tables`);
  const out: Record<string, TableFingerprint> = {};
  for (const t of tables) {
    const r = await db.query<{ n: number; h: string }>(`SELECT count(*)::int AS n, coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') AS h FROM "${schema}"."${t}" x`);
    out[t] = { rows: r.rows[0].n, md5: r.rows[0].h };
  }
  return out;
}

let reference: ValidateFunction | undefined;

/** Letta's published .af v2 schema (discriminators removed, as in test/format/schema-agreement.test.ts). */
export function referenceValidator(): ValidateFunction {
  if (reference) return reference;
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.entries(v)
          .filter(([k]) => k !== 'discriminator')
          .map(([k, x]) => [k, strip(x)]),
      );
    return v;
  };
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  reference = ajv.compile(strip(JSON.parse(readFileSync(REFERENCE_SCHEMA, 'utf8'))) as object);
  return reference;
}

export function assertValidAf(doc: unknown, where: string): void {
  const v2 = getValidator('agent-file.v2');
  assert.ok(v2(doc), `${where} passes the project's v2 schema: ${JSON.stringify(v2.errors?.slice(0, 3))}`);
  const ref = referenceValidator();
  assert.ok(ref(doc), `${where} passes Letta's reference schema: ${JSON.stringify(ref.errors?.slice(0, 3))}`);
}

export interface ArchiveAgent {
  id: string;
  name: string | null;
  doc: AgentFileV2;
  passages: Record<string, any>[];
  vectors: Buffer | null;
  dim: number | null;
}

/** Every agent of an archive with its .af, passages and raw vector file. */
export async function readArchiveAgents(file: string): Promise<{ manifest: Manifest; agents: ArchiveAgent[] }> {
  const r = await openArchive(file, { verifyEntries: true });
  try {
    const agents: ArchiveAgent[] = [];
    for (const a of r.manifest.agents) {
      const doc = await r.readJson<AgentFileV2>(a.entry);
      const passages = a.passages_entry
        ? (await r.readEntry(a.passages_entry))
            .toString('utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l))
        : [];
      const vectors = a.vectors_entry ? await r.readEntry(a.vectors_entry) : null;
      agents.push({ id: a.id, name: a.name, doc, passages, vectors, dim: vectors ? readVectors(vectors).header.dim : null });
    }
    return { manifest: r.manifest, agents };
  } finally {
    await r.close();
  }
}

/**
 * An exported .af without what legitimately differs between two exports of equal agents: the
 * export time and, with `ids: false`, every database id (file-local ids stay: they are assigned
 * in a deterministic order).
 */
export function normalizeAf(doc: AgentFileV2, o: { ids: boolean; name?: string } = { ids: true }): any {
  const d = JSON.parse(JSON.stringify(doc));
  delete d.created_at;
  if (!o.ids) {
    const ext = d.agent_vault;
    if (ext) {
      delete ext.ids;
      for (const e of ext.environment ?? []) delete e.id;
      for (const i of ext.identities ?? []) delete i.id;
      if (ext.archive) delete ext.archive.id;
    }
    for (const a of d.agents) for (const m of a.messages ?? []) if (m.agent_vault) delete m.agent_vault.id;
  }
  if (o.name !== undefined) d.agents[0].name = o.name;
  return d;
}

export function normalizePassages(ps: Record<string, any>[], ids: boolean): any[] {
  return ps.map((p) => {
    const { id, archive_id, ...rest } = p;
    return ids ? p : rest;
  });
}

/** A 4096-dim pgvector literal for a query vector of the true dimension. */
export function queryLiteral(v: ArrayLike<number>, padTo = 4096): string {
  const parts: string[] = [];
  for (let i = 0; i < padTo; i++) parts.push(i < v.length ? String(v[i]) : '0');
  return `[${parts.join(',')}]`;
}

/** The k nearest archival passages (texts) of an agent for a query vector. */
export async function nearest(db: Queryable, agentId: string, query: string, k = 5): Promise<string[]> {
  const r = await db.query<{ text: string }>(
    `SELECT p.text FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id
      WHERE aa.agent_id = $1 ORDER BY p.embedding <-> $2::vector, p.text LIMIT $3`,
    [agentId, query, k],
  );
  return r.rows.map((x) => x.text);
}

/** Deterministic pseudo-random vector. */
export function seededVector(dim: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: dim }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** postgres:// URL of the database `db` is connected to (on the shared test server). */
export async function urlOf(db: Queryable): Promise<string> {
  const server = await sharedTestPostgres();
  const name = (await db.query<{ d: string }>(`SELECT current_database() AS d`)).rows[0].d;
  const u = new URL(server.adminUrl);
  u.pathname = '/' + encodeURIComponent(name);
  return u.toString();
}

/** Flips one byte inside the data of a zip entry (found through its local header). */
export function corruptEntry(zip: Buffer, entry: string, at = 40): Buffer {
  const out = Buffer.from(zip);
  const name = Buffer.from(entry, 'utf8');
  let i: number;
  for (let from = 0; ; from = i + 1) {
    i = out.indexOf(name, from);
    assert.ok(i >= 30, `entry ${entry} found`);
    if (out.readUInt32LE(i - 30) === 0x04034b50) break; // a local file header, not the central directory
  }
  const header = i - 30;
  const data = header + 30 + out.readUInt16LE(header + 26) + out.readUInt16LE(header + 28);
  out[data + at] ^= 0xff;
  return out;
}
