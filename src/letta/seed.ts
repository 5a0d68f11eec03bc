/**
 * Seeding: loads an agent file into a Letta database the way Letta's own import
 * (POST /v1/agents/import, AgentSerializationManager.import_file) lays it out — every object gets
 * a new id, existing tools of the same name are overwritten (override_existing_tools), agents of
 * the same name may exist side by side, all blocks/tools/sources of the file are created — but
 * written directly with the restore machinery (one transaction, bulk inserts), so no Letta server
 * is needed. For tests, the demo and benchmarks.
 *
 * Differences from Letta's import, by design: no file chunking/embedding jobs are started (file
 * contents are stored, chunks are not created), base tools are not added, and the file's
 * revision is not checked (Letta's import accepts any revision).
 */
import type { Db } from '../db/types';
import type { AgentFileV1, AgentFileV2 } from '../format/types';
import { restoreAgents, type RestoreResult, type ToolsMode } from './restore';
import { insertSyntheticPassages } from './synth';

export interface SeedOptions {
  organizationId?: string;
  userId?: string;
  /** Existing tools of the same name: overwrite (default, like Letta's import) or keep. */
  tools?: ToolsMode;
  /** Also give every seeded agent an archive with synthetic archival passages. */
  passages?: { count: number; dim?: number; seed?: number; embeddingModel?: string };
}

export interface SeedResult {
  /** the agents created, in file order */
  agents: Array<{ fileId: string; id: string; name: string | null }>;
  passages: number;
  restore: RestoreResult;
}

export async function seedAgentFile(db: Db, source: string | AgentFileV2 | AgentFileV1, opts: SeedOptions = {}): Promise<SeedResult> {
  const res = await restoreAgents(db, typeof source === 'string' ? source : { doc: source }, {
    newIds: true,
    allowDuplicateNames: true,
    onConflict: 'fail',
    tools: opts.tools ?? 'replace',
    forceSchema: true,
    allowEmbeddingMismatch: true,
    // Letta's import leaves an agent with no messages without any in-context message
    initialSystemMessage: false,
    organizationId: opts.organizationId,
    userId: opts.userId,
  });
  const agents = res.plan.agents.filter((a) => a.target_id).map((a) => ({ fileId: a.file_id, id: a.target_id!, name: a.target_name }));
  let passages = 0;
  if (opts.passages && opts.passages.count > 0) {
    const p = opts.passages;
    // per agent: its own embedding dimension and model unless given
    const rows = await db.query<{ id: string; dim: string | null; model: string | null }>(
      `SELECT id, embedding_config->>'embedding_dim' AS dim, embedding_config->>'embedding_model' AS model FROM agents WHERE id = ANY($1::text[])`,
      [agents.map((a) => a.id)],
    );
    let seededAgents = 0;
    await db.transaction(async (tx) => {
      for (const r of rows.rows) {
        passages += await insertSyntheticPassages(tx, {
          agentIds: [r.id],
          count: p.count,
          dim: p.dim ?? (Number(r.dim) || 1536),
          seed: (p.seed ?? 1) + seededAgents++,
          embeddingModel: p.embeddingModel ?? r.model ?? 'synthetic-embedding',
          organizationId: opts.organizationId,
          userId: opts.userId,
        });
      }
    });
  }
  return { agents, passages, restore: res };
}
