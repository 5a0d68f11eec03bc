/**
 * Export of Letta agents from a running Letta database (PostgreSQL or PGlite) into a snapshot
 * archive (docs/FORMAT.md): one Letta-compatible `.af` v2 per agent, its archival passages
 * (`passages/<id>.jsonl`) and their embeddings at the true dimension (`passages/<id>.vectors`).
 *
 * Consistency: everything is read in ONE `READ ONLY, REPEATABLE READ` transaction, so the archive
 * is a snapshot even while agents keep writing (every in-context message id of an agent names a
 * message that is in the archive).
 *
 * Memory: messages and passages are read with server-side cursors and streamed straight into the
 * archive entries; what is held at once is one batch of rows plus the agent's small objects
 * (blocks, tools, groups, sources, files).
 *
 * The `.af` of each agent follows Letta's own export (letta/services/agent_serialization_manager.py):
 * file-local ids (`agent-0`, `block-3`, `message-17`, …; one id space for the whole archive, so
 * the per-agent files can be merged back into one document), tools sorted by name, messages in
 * `sequence_id` order — but ALL of them, not Letta's last 50. Secrets are redacted in the .af (keys
 * kept, values ''); an encrypted export (`encryption`) writes the whole archive encrypted as it
 * streams (no plaintext file) and carries the values in `secrets/<agent-id>.env.json` entries
 * (./secrets.ts says where a value comes from). What Letta's format has no field for travels in the top-level `agent_vault` object
 * (ignored by Letta's import; see docs/RESTORE.md "The agent_vault extension"): the original
 * database id of every object, the columns the .af drops, identities, the archive row.
 */ import * as path from 'node:path';
import type { Db, Queryable } from '../db/types';
import { createArchiveWriter, safeEntrySegment, type ArchiveWriter, type ManifestAgent } from '../format/archive';
import { addGroupMembers, FileIds, loadRelated, planIds, selectAgents } from './export/load';
import { writeAgent } from './export/agent';
import { agentChangeKey, databaseIdentity, databaseState } from './export/change-key';
import type { ExportOptions, ExportProgress, ExportResult, ExportReuse, SecretsEntry } from './export/types';
import { resolveSecretValue } from './secrets';
import { describeDb, readLettaInfo } from './sql';
import { num, type Obj as Row } from './tables/common';

export type { ExportSelect, ExportProgress, ExportOptions, AgentVectorsContext, VectorObserver, ExportResult, ExportReuse, SecretsEntry } from './export/types';
/** Key of the extension object in each exported .af (see the module comment). */
export { AV_EXT, AV_EXT_VERSION } from './ext';

// ---------------------------------------------------------------------------------------------
// listing

export interface AgentListing {
  id: string;
  name: string | null;
  agent_type: string | null;
  tags: string[];
  messages: number;
  in_context_messages: number;
  passages: number;
  blocks: number;
  tools: number;
  llm_model: string | null;
  embedding_model: string | null;
  embedding_dim: number | null;
  /** updated_at as ISO 8601 text */
  last_updated: string | null;
}

/** The agents of a Letta database with their sizes (one query; nothing is locked). */
export async function listAgents(db: Queryable, opts: { organizationId?: string } = {}): Promise<AgentListing[]> {
  await readLettaInfo(db, describeDb(db));
  const r = await db.query<Omit<AgentListing, 'embedding_dim'> & { embedding_dim: string | null }>(
    `SELECT a.id, a.name, a.agent_type,
            COALESCE((SELECT array_agg(t.tag ORDER BY t.tag) FROM agents_tags t WHERE t.agent_id = a.id), '{}') AS tags,
            (SELECT count(*)::int FROM messages m WHERE m.agent_id = a.id AND NOT m.is_deleted) AS messages,
            CASE WHEN json_typeof(a.message_ids) = 'array' THEN json_array_length(a.message_ids) ELSE 0 END AS in_context_messages,
            (SELECT count(*)::int FROM archives_agents aa JOIN archival_passages p ON p.archive_id = aa.archive_id
              WHERE aa.agent_id = a.id AND NOT p.is_deleted) AS passages,
            (SELECT count(*)::int FROM blocks_agents b WHERE b.agent_id = a.id) AS blocks,
            (SELECT count(*)::int FROM tools_agents t WHERE t.agent_id = a.id) AS tools,
            a.llm_config->>'model' AS llm_model,
            a.embedding_config->>'embedding_model' AS embedding_model,
            a.embedding_config->>'embedding_dim' AS embedding_dim,
            a.updated_at AS last_updated
       FROM agents a
      WHERE NOT a.is_deleted AND ($1::text IS NULL OR a.organization_id = $1)
      ORDER BY a.name NULLS LAST, a.id`,
    [opts.organizationId ?? null],
  );
  return r.rows.map((row) => ({
    ...row,
    tags: Array.isArray(row.tags) ? row.tags : [],
    embedding_dim: num(row.embedding_dim),
  }));
}

// ---------------------------------------------------------------------------------------------
// export

/** `secrets/<agent-id>.env.json`: an agent's environment variables with their values (encrypted archives only). */
export function secretsEntryName(agentId: string): string {
  return `secrets/${safeEntrySegment(agentId)}.env.json`;
}

export async function exportAgents(db: Db, opts: ExportOptions): Promise<ExportResult> {
  const out = path.resolve(opts.out);
  const where = describeDb(db);
  const createdAt = opts.createdAt ?? new Date().toISOString();
  const warnings: string[] = [];
  const progress = async (e: ExportProgress) => {
    if (e.phase === 'warning' && e.message) warnings.push(e.message);
    await opts.onProgress?.(e);
  };
  const writer = opts.writer ?? (await createArchiveWriter(out, { overwrite: opts.overwrite, encryption: opts.encryption }));
  const withSecrets = (!!opts.encryption || opts.writer?.encrypted === true) && opts.secrets !== false;
  let secretCount = 0;
  const reuser = writer.reuse;
  const reuse: ExportReuse = { parent: null, reused: 0, exported: 0, off: reuser ? null : 'the archive writer does not reuse earlier snapshots' };
  try {
    const input = await db.transaction(
      async (tx) => {
        const info = await readLettaInfo(tx, where);
        if (opts.legacyVectorPath) info.hasSubvector = false;
        await progress({ phase: 'snapshot' });
        let agents = await selectAgents(tx, opts.select, opts.organizationId, where);
        const added: string[] = [];
        agents = await addGroupMembers(tx, agents, added);
        for (const w of added) await progress({ phase: 'warning', message: w });
        const L = await loadRelated(tx, agents);
        const ids = new FileIds();
        const plans = await planIds(tx, L, ids);
        // change keys (./export/change-key.ts): only when the writer can reuse an earlier snapshot's agents
        let keyContext: string | null = null;
        if (reuser) {
          const who = await databaseIdentity(tx, db.kind);
          if (who.identity === null) {
            reuse.off = who.reason;
            if (db.kind === 'pg') await progress({ phase: 'warning', message: `every agent is read in full: ${who.reason}` });
          } else {
            reuse.parent = (await reuser.begin(who.identity))?.parent ?? null;
            keyContext = JSON.stringify([who.identity, await databaseState(tx), info.hasSubvector, withSecrets, opts.changeKeyContext ?? null]);
          }
        }
        const manifestAgents: ManifestAgent[] = [];
        for (const [i, p] of plans.entries()) {
          const agentId = p.row.id as string;
          await progress({ phase: 'agent', agentId, name: p.row.name, index: i + 1, total: plans.length });
          let key: string | null = null;
          let reused = false;
          const m = await writeAgent(tx, writer, info, L, ids, p, {
            createdAt,
            batchSize: opts.batchSize,
            progress,
            index: i + 1,
            total: plans.length,
            onAgentVectors: opts.onAgentVectors,
            reuse:
              reuser && keyContext !== null
                ? async (k) => {
                    key = await agentChangeKey(tx, {
                      context: keyContext!,
                      agentId,
                      head: k.head,
                      rest: k.rest,
                      messageBase: p.messageBase,
                      archiveId: k.archiveId,
                      dim: k.dim,
                      fileIds: p.fileIds,
                      fileIdOf: (x) => ids.get(x),
                    });
                    const got = await reuser.reuseAgent(agentId, key);
                    reused = got !== null;
                    return got;
                  }
                : undefined,
          });
          if (reused) {
            reuse.reused++;
            await opts.onAgentReused?.(m);
          } else {
            reuse.exported++;
            if (reuser && key !== null) reuser.recordAgent(agentId, key, m);
          }
          manifestAgents.push(m);
          if (withSecrets) secretCount += await writeSecrets(writer, agentId, L.env.get(p.row.id) ?? [], opts.lettaEncryptionKey, progress);
        }
        return { info, manifestAgents };
      },
      { isolation: 'repeatable read', readOnly: true },
    );
    const source = {
      kind: db.kind === 'pglite' ? ('pglite' as const) : ('postgres' as const),
      letta_revision: input.info.revision,
      pgvector_version: input.info.pgvectorVersion,
      postgres_version: input.info.postgresVersion,
      database: input.info.database,
      schema: input.info.schema,
      organization_id: opts.organizationId ?? null,
    };
    const more = (await opts.extraEntries?.(writer, input.manifestAgents)) ?? {};
    const res = await writer.finish({
      created_at: createdAt,
      source,
      agents: input.manifestAgents,
      secrets: !withSecrets ? 'redacted' : secretCount > 0 ? 'encrypted' : 'none',
      ...more,
    });
    await progress({ phase: 'done' });
    return { ...res, warnings, secrets: secretCount, reuse };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** The agent's environment variables with their values, as an entry of an encrypted archive; returns how many. */
async function writeSecrets(writer: ArchiveWriter, agentId: string, env: Row[], lettaKey: string | undefined, progress: (e: ExportProgress) => Promise<void>): Promise<number> {
  if (env.length === 0) return 0;
  const variables: SecretsEntry['variables'] = [];
  for (const e of env) {
    const r = resolveSecretValue({ key: String(e.key), value: e.value, value_enc: e.value_enc }, lettaKey);
    if (r.warning) await progress({ phase: 'warning', agentId, message: `agent ${agentId}: ${r.warning}` });
    variables.push({
      id: e.id,
      key: e.key,
      value: r.value,
      value_enc: typeof e.value_enc === 'string' ? e.value_enc : null,
      value_source: r.source,
      description: e.description ?? null,
      created_at: e.created_at ?? null,
      updated_at: e.updated_at ?? null,
    });
  }
  const entry: SecretsEntry = { agent_id: agentId, variables };
  await writer.addJson(secretsEntryName(agentId), entry, { mediaType: 'application/json' });
  return variables.length;
}
