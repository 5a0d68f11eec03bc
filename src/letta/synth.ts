/**
 * Synthetic Letta databases for tests, the demo and benchmarks: N agents × M messages × P
 * archival passages with D-dimensional embeddings (zero-padded to the column's 4096, as Letta
 * stores them), written with set-based SQL (generate_series) in one transaction.
 *
 * Deterministic: the same options (seed included) on an empty Letta database give byte-identical
 * rows — ids are uuid-shaped md5 digests of (seed, kind, numbers), timestamps count up from a
 * fixed instant, and embeddings come from PostgreSQL's random() after setseed(seed).
 */
import { AgentVaultError } from '../core/errors';
import type { Db, Queryable } from '../db/types';
import { DEFAULT_ORG_ID, DEFAULT_USER_ID } from './ddl';
import { loadColumns } from './sql';

export interface SynthOptions {
  agents: number;
  messagesPerAgent: number;
  passagesPerAgent: number;
  /** true embedding dimension (e.g. 1536) */
  dim: number;
  seed: number;
  organizationId?: string;
  userId?: string;
  /** messages in each agent's context window: the system message plus the latest ones (default 20) */
  inContext?: number;
  /** embedding model name recorded in the configs (default "synthetic-embedding") */
  embeddingModel?: string;
}

export interface SynthResult {
  agentIds: string[];
  messages: number;
  passages: number;
  ms: number;
}

/** Fixed origin of every synthetic timestamp. */
const EPOCH = '2025-01-01T00:00:00+00:00';

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new AgentVaultError('synth-bad-option', `${name} must be an integer from ${min} to ${max} (got ${v})`, { kind: 'usage' });
}

/** SQL text of a Letta id `<prefix>-<uuid v4 shape>` from an md5 hex digest column `h`. */
function uuidOf(prefix: string, h: string): string {
  return `'${prefix}-' || substr(${h},1,8) || '-' || substr(${h},9,4) || '-4' || substr(${h},14,3) || '-a' || substr(${h},18,3) || '-' || substr(${h},21,12)`;
}

function embeddingConfig(model: string, dim: number): string {
  return JSON.stringify({
    embedding_endpoint_type: 'openai',
    embedding_endpoint: null,
    embedding_model: model,
    embedding_dim: dim,
    embedding_chunk_size: 300,
    handle: `openai/${model}`,
    batch_size: 32,
    azure_endpoint: null,
    azure_version: null,
    azure_deployment: null,
  });
}

async function paddedDim(q: Queryable): Promise<number | null> {
  const cols = await loadColumns(q, ['archival_passages']);
  return cols.get('archival_passages')!.find((c) => c.name === 'embedding')?.vectorDim ?? null;
}

/** `(values || zeros)::vector` padding expression for a real[] expression. */
function padExpr(arr: string, dim: number, padTo: number | null): string {
  if (padTo !== null && dim > padTo) throw new AgentVaultError('synth-bad-option', `dim ${dim} is larger than the ${padTo} dimensions of archival_passages.embedding`, { kind: 'usage' });
  return padTo !== null && padTo > dim ? `(${arr} || array_fill(0::real, ARRAY[${padTo - dim}]))::vector` : `(${arr})::vector`;
}

export interface SyntheticPassagesOptions {
  /** agents to give passages, each gets its own archive (ids derived from the agent id) */
  agentIds: string[];
  count: number;
  dim: number;
  seed: number;
  embeddingModel?: string;
  organizationId?: string;
  userId?: string;
}

/**
 * Adds an archive (owned by the agent) with `count` passages to each agent, inside `tx`.
 * Embeddings: `dim` values from random() in [-1, 1) after setseed(seed); every third passage is
 * tagged. Returns the number of passages written.
 */
export async function insertSyntheticPassages(tx: Queryable, o: SyntheticPassagesOptions): Promise<number> {
  checkInt('count', o.count, 0);
  checkInt('dim', o.dim, 1, 16000);
  if (o.count === 0 || o.agentIds.length === 0) return 0;
  const org = o.organizationId ?? DEFAULT_ORG_ID;
  const user = o.userId ?? DEFAULT_USER_ID;
  const ec = embeddingConfig(o.embeddingModel ?? 'synthetic-embedding', o.dim);
  const padTo = await paddedDim(tx);
  await tx.query(`SELECT setseed($1)`, [((Math.abs(o.seed) % 1_000_000) / 1_000_000) * (o.seed < 0 ? -1 : 1)]);
  await tx.query(
    `INSERT INTO archives (id, name, description, metadata_, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, organization_id, vector_db_provider, embedding_config)
     SELECT ${uuidOf('archive', 'x.h')}, coalesce(a.name, 'agent') || '''s Archive', NULL, '{}'::json, $3::timestamptz, $3::timestamptz, false, $4, $4, $2, 'NATIVE', $5::json
       FROM agents a, LATERAL (SELECT md5($6 || ':archive:' || a.id) AS h) x WHERE a.id = ANY($1::text[])`,
    [o.agentIds, org, EPOCH, user, ec, String(o.seed)],
  );
  await tx.query(
    `INSERT INTO archives_agents (agent_id, archive_id, created_at, is_owner)
     SELECT ag.id, ${uuidOf('archive', 'x.h')}, $3::timestamptz, true
       FROM agents ag, LATERAL (SELECT md5($2 || ':archive:' || ag.id) AS h) x WHERE ag.id = ANY($1::text[])`,
    [o.agentIds, String(o.seed), EPOCH],
  );
  const r = await tx.query(
    `INSERT INTO archival_passages (id, text, embedding_config, metadata_, embedding, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, organization_id, archive_id, tags)
     SELECT ${uuidOf('passage', 'x.h')},
            'Synthetic passage ' || n || ' of ' || coalesce(ag.name, ag.id) || ': ' || substr(x.h, 1, 16),
            $5::json, json_build_object('source', 'synthetic', 'n', n),
            ${padExpr(`ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, $7::int) AS i WHERE n IS NOT NULL)`, o.dim, padTo)},
            $3::timestamptz + n * interval '1 second', $3::timestamptz + n * interval '1 second', false, $4, $4, $2,
            ${uuidOf('archive', "md5($6 || ':archive:' || ag.id)")},
            CASE WHEN n % 3 = 0 THEN json_build_array('synthetic', 'bucket-' || (n % 7)) ELSE NULL END
       FROM agents ag CROSS JOIN generate_series(1, $8::int) AS n, LATERAL (SELECT md5($6 || ':passage:' || ag.id || ':' || n) AS h) x
      WHERE ag.id = ANY($1::text[])
      ORDER BY ag.id, n`,
    [o.agentIds, org, EPOCH, user, ec, String(o.seed), o.dim, o.count],
  );
  await tx.query(
    `INSERT INTO passage_tags (id, tag, passage_id, archive_id, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, organization_id)
     SELECT ${uuidOf('passage-tag', "md5($3 || ':tag:' || p.id || ':' || t.tag)")}, t.tag, p.id, p.archive_id, p.created_at, p.created_at, false, $2, $2, p.organization_id
       FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id
       CROSS JOIN LATERAL json_array_elements_text(p.tags) AS t(tag)
      WHERE aa.agent_id = ANY($1::text[]) AND p.tags IS NOT NULL`,
    [o.agentIds, user, String(o.seed)],
  );
  return r.rowCount;
}

/**
 * Writes a synthetic Letta data set into `db` (which must hold Letta's schema and not already
 * hold a data set made with the same seed). One transaction.
 */
export async function generateSyntheticDb(db: Db, o: SynthOptions): Promise<SynthResult> {
  checkInt('agents', o.agents, 1, 1_000_000);
  checkInt('messagesPerAgent', o.messagesPerAgent, 1);
  checkInt('passagesPerAgent', o.passagesPerAgent, 0);
  checkInt('dim', o.dim, 1, 16000);
  checkInt('seed', o.seed, -2_147_483_648, 2_147_483_647);
  const inContext = o.inContext ?? 20;
  checkInt('inContext', inContext, 1);
  const org = o.organizationId ?? DEFAULT_ORG_ID;
  const user = o.userId ?? DEFAULT_USER_ID;
  const seed = String(o.seed);
  const model = o.embeddingModel ?? 'synthetic-embedding';
  const ec = embeddingConfig(model, o.dim);
  const llm = JSON.stringify({
    model: 'gpt-4o-mini',
    model_endpoint_type: 'openai',
    model_endpoint: 'https://api.openai.com/v1',
    context_window: 128000,
    handle: 'openai/gpt-4o-mini',
    temperature: 0.7,
  });
  const started = Date.now();
  return db.transaction(async (tx) => {
    const p = [seed, org, user, EPOCH];
    // three tools shared by every agent
    await tx.query(
      `INSERT INTO tools (id, name, description, source_type, source_code, json_schema, tags, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, organization_id, tool_type, return_char_limit)
       SELECT ${uuidOf('tool', 'x.h')}, 'synthetic_' || $1 || '_tool_' || k, 'Synthetic tool ' || k,
              'python', 'def synthetic_' || $1 || '_tool_' || k || '(query: str) -> str:' || chr(10) || '    """Synthetic tool ' || k || '."""' || chr(10) || '    return query',
              json_build_object('name', 'synthetic_' || $1 || '_tool_' || k, 'description', 'Synthetic tool ' || k,
                                'parameters', json_build_object('type', 'object', 'properties', json_build_object('query', json_build_object('type', 'string')), 'required', json_build_array('query'))),
              '[]'::json, $4::timestamptz, $4::timestamptz, false, $3, $3, $2, 'custom', 6000
         FROM generate_series(1, 3) AS k, LATERAL (SELECT md5($1 || ':tool:' || k) AS h) x`,
      p,
    );
    const agents = await tx.query<{ id: string }>(
      `INSERT INTO agents (id, name, created_at, updated_at, description, message_ids, system, agent_type, llm_config, embedding_config, metadata_, tool_rules,
                           is_deleted, _created_by_id, _last_updated_by_id, organization_id, message_buffer_autoclear, timezone, max_files_open, per_file_view_window_char_limit)
       SELECT ${uuidOf('agent', 'x.h')}, 'synthetic-' || $1 || '-' || lpad(a::text, 6, '0'), $4::timestamptz + a * interval '1 minute', $4::timestamptz + a * interval '1 minute',
              'Synthetic agent ' || a, '[]'::json, 'You are synthetic agent ' || a || '.', 'letta_v1_agent', $5::json, $6::json,
              json_build_object('synthetic', true, 'seed', $1::int), json_build_array(json_build_object('tool_name', 'synthetic_' || $1 || '_tool_1', 'type', 'exit_loop')),
              false, $3, $3, $2, false, 'UTC', 5, 15000
         FROM generate_series(1, $7::int) AS a, LATERAL (SELECT md5($1 || ':agent:' || a) AS h) x
        ORDER BY a
       RETURNING id`,
      [...p, llm, ec, o.agents],
    );
    const agentIds = agents.rows.map((r) => r.id);
    await tx.query(
      `INSERT INTO block (id, value, "limit", label, metadata_, description, is_template, organization_id, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, version, read_only)
       SELECT ${uuidOf('block', 'x.h')}, CASE WHEN l = 'persona' THEN 'I am ' || ag.name || '.' ELSE 'The human is user ' || substr(ag.id, 7, 8) || '.' END,
              20000, l, '{}'::json, 'The ' || l || ' block', false, $2, ag.created_at, ag.created_at, false, $3, $3, 1, false
         FROM agents ag CROSS JOIN unnest(ARRAY['human', 'persona']) AS l, LATERAL (SELECT md5($1 || ':block:' || ag.id || ':' || l) AS h) x
        WHERE ag.id = ANY($4::text[])`,
      [seed, org, user, agentIds],
    );
    await tx.query(
      `INSERT INTO blocks_agents (agent_id, block_id, block_label)
       SELECT ag.id, ${uuidOf('block', "md5($1 || ':block:' || ag.id || ':' || l)")}, l FROM agents ag CROSS JOIN unnest(ARRAY['human', 'persona']) AS l WHERE ag.id = ANY($2::text[])`,
      [seed, agentIds],
    );
    await tx.query(
      `INSERT INTO tools_agents (agent_id, tool_id)
       SELECT ag.id, ${uuidOf('tool', "md5($1 || ':tool:' || k)")} FROM agents ag CROSS JOIN generate_series(1, 3) AS k WHERE ag.id = ANY($2::text[])`,
      [seed, agentIds],
    );
    await tx.query(`INSERT INTO agents_tags (agent_id, tag) SELECT ag.id, t FROM agents ag CROSS JOIN unnest(ARRAY['synthetic', 'seed-' || $1]) AS t WHERE ag.id = ANY($2::text[])`, [seed, agentIds]);
    const msgs = await tx.query(
      `INSERT INTO messages (id, agent_id, role, content, tool_calls, created_at, updated_at, is_deleted, _created_by_id, _last_updated_by_id, organization_id, model)
       SELECT ${uuidOf('message', 'x.h')}, ag.id,
              CASE WHEN n = 0 THEN 'system' WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
              json_build_array(json_build_object('type', 'text', 'text',
                CASE WHEN n = 0 THEN 'You are ' || ag.name || '.' ELSE 'Synthetic message ' || n || ' of ' || ag.name || ' (' || substr(x.h, 1, 12) || ')' END)),
              '[]'::json, ag.created_at + n * interval '1 second', ag.created_at + n * interval '1 second', false, $3, $3, $2,
              CASE WHEN n % 2 = 0 AND n > 0 THEN 'gpt-4o-mini' ELSE NULL END
         FROM agents ag CROSS JOIN generate_series(0, $5::int - 1) AS n, LATERAL (SELECT md5($1 || ':message:' || ag.id || ':' || n) AS h) x
        WHERE ag.id = ANY($4::text[])
        ORDER BY ag.created_at, ag.id, n`,
      [seed, org, user, agentIds, o.messagesPerAgent],
    );
    // context window: the system message and the latest (inContext - 1) messages, in order
    await tx.query(
      `UPDATE agents a SET message_ids = s.ids
         FROM (SELECT agent_id, json_agg(id ORDER BY sequence_id) AS ids
                 FROM (SELECT agent_id, id, sequence_id, row_number() OVER (PARTITION BY agent_id ORDER BY sequence_id) AS first_n,
                              row_number() OVER (PARTITION BY agent_id ORDER BY sequence_id DESC) AS last_n
                         FROM messages WHERE agent_id = ANY($1::text[])) m
                WHERE first_n = 1 OR last_n < $2::int
                GROUP BY agent_id) s
        WHERE a.id = s.agent_id`,
      [agentIds, inContext],
    );
    const passages = await insertSyntheticPassages(tx, { agentIds, count: o.passagesPerAgent, dim: o.dim, seed: o.seed, embeddingModel: model, organizationId: org, userId: user });
    return { agentIds, messages: msgs.rowCount, passages, ms: Date.now() - started };
  });
}
