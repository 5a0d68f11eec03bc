/**
 * One agent of an export: its `.af` entry (the agent, then its messages streamed from a cursor,
 * then the rest of the document) and its passages and vectors entries. The rows become `.af`
 * objects in ../tables/<table>.ts.
 */
import { AgentVaultError } from '../../core/errors';
import { iterateBatches } from '../../db/cursor';
import type { Queryable } from '../../db/types';
import { agentEntryName, passagesEntryName, vectorsEntryName, type ArchiveWriter, type ManifestAgent } from '../../format/archive';
import type { JsonObject } from '../../format/types';
import { AV_EXT, AV_EXT_VERSION } from '../ext';
import type { LettaDbInfo } from '../sql';
import { agentJson } from '../tables/agents';
import { archiveJson } from '../tables/archives';
import { blockJson } from '../tables/block';
import { isObj, num, pickColumns, type Obj as Row } from '../tables/common';
import { environmentJson } from '../tables/environment';
import { fileAgentJson, fileJson } from '../tables/files';
import { groupJson } from '../tables/groups';
import { identityJson } from '../tables/identities';
import { EXTRA_COLUMNS } from '../tables/index';
import { mcpJson } from '../tables/mcp-server';
import { messageJson } from '../tables/messages';
import { readVectorsById, trueDimension, writePassages, writeVectorsEntry } from '../tables/passages';
import { writeFilePassages } from '../tables/source-passages';
import { sourceJson } from '../tables/sources';
import { toolJson } from '../tables/tools';
import { groupMembers, type AgentPlan, type FileIds, type Loaded } from './load';
import type { ExportOptions, ExportProgress } from './types';

function extras(table: string, row: Row): JsonObject | undefined {
  return pickColumns(EXTRA_COLUMNS[table] ?? [], row) as JsonObject | undefined;
}

export async function writeAgent(
  tx: Queryable,
  writer: ArchiveWriter,
  info: LettaDbInfo,
  L: Loaded,
  ids: FileIds,
  p: AgentPlan,
  o: {
    createdAt: string;
    batchSize?: number;
    progress: (e: ExportProgress) => Promise<void>;
    index: number;
    total: number;
    onAgentVectors?: ExportOptions['onAgentVectors'];
    /**
     * Asked once the agent's small objects are known, before any message or passage is read:
     * returns the agent's manifest record when its entries were taken from an earlier snapshot
     * (the agent is then not written), else null. `rest` is the document after the agent without
     * its `created_at` (./change-key.ts).
     */
    reuse?: (k: { head: string; rest: string; archiveId: string | null; dim: number | null }) => Promise<ManifestAgent | null>;
  },
): Promise<ManifestAgent> {
  const a = p.row;
  const agentId = a.id as string;

  const inContextDb: string[] = Array.isArray(a.message_ids) ? a.message_ids.filter((x: unknown): x is string => typeof x === 'string') : [];

  const link = L.archiveLink.get(agentId);
  const env = L.env.get(agentId) ?? [];
  const redacted = env.length ? Object.fromEntries(env.map((e) => [e.key as string, ''])) : null;
  const slice = {
    blocks: new Set<string>(p.blockIds),
    groups: p.groupIds,
  };
  for (const g of p.groupIds) for (const b of L.groupBlocks.get(g) ?? []) if (L.blocksById.has(b)) slice.blocks.add(b);
  const identities = [...L.identitiesById.values()].filter((i) => (L.identityAgents.get(i.id) ?? []).includes(agentId));
  for (const i of identities) for (const b of L.identityBlocks.get(i.id) ?? []) if (L.blocksById.has(b)) slice.blocks.add(b);
  const tools = p.toolIds.map((t) => L.toolsById.get(t)!);
  const mcp = new Map<string, Row>();
  for (const t of tools) {
    const m = isObj(t.metadata_) && isObj(t.metadata_.mcp) ? t.metadata_.mcp : undefined;
    const srv = m ? (typeof m.server_id === 'string' ? L.mcpById.get(m.server_id) : typeof m.server_name === 'string' ? L.mcpByName.get(m.server_name) : undefined) : undefined;
    if (srv) mcp.set(srv.id, srv);
  }

  // A group goes into the entry's `groups` only when every member and its manager are in the
  // entry (this agent); a group with other members is kept in the extension (agent_vault.groups),
  // so that each entry is importable by Letta on its own and a restore still rebuilds the group.
  const whole = new Set(p.groupIds.filter((g) => [...groupMembers(L, L.groupsById.get(g)!), L.groupsById.get(g)!.manager_agent_id].every((m) => m === null || m === undefined || m === agentId)));
  const agentFile = p.fileId;
  const agentObjWith = (inContext: string[]) =>
    agentJson(a, {
      fileId: agentFile,
      toolIds: p.toolIds.map((t) => ids.get(t)!),
      sourceIds: p.sourceIds.map((s) => ids.get(s)!),
      blockIds: p.blockIds.map((b) => ids.get(b)!),
      tags: L.tags.get(agentId) ?? [],
      redacted,
      inContext,
      filesAgents: (L.fileAgents.get(agentId) ?? []).filter((fa) => ids.get(fa.file_id) && ids.get(fa.source_id)).map((fa) => fileAgentJson(fa, agentFile, (id) => ids.get(id))),
      // only groups held in this entry: Letta's import maps every id through its own table
      groupIds: p.managedGroupIds.filter((g) => whole.has(g)).map((g) => ids.get(g)!),
    });

  // The extension: original ids and what the .af cannot hold.
  const idMap: Record<string, string> = { [agentFile]: agentId };
  const rows: Record<string, JsonObject> = {};
  const note = (fileId: string, dbId: string, table: string, row: Row) => {
    idMap[fileId] = dbId;
    const x = extras(table, row);
    if (x) rows[fileId] = x;
  };
  note(agentFile, agentId, 'agents', a);
  const blocks = [...slice.blocks].map((b) => L.blocksById.get(b)!).sort((x, y) => Number(ids.get(x.id)!.slice(6)) - Number(ids.get(y.id)!.slice(6)));
  for (const b of blocks) note(ids.get(b.id)!, b.id, 'block', b);
  for (const t of tools) note(ids.get(t.id)!, t.id, 'tools', t);
  const sources = p.sourceIds.map((s) => L.sourcesById.get(s)!);
  for (const s of sources) note(ids.get(s.id)!, s.id, 'sources', s);
  const files = p.fileIds.map((f) => L.filesById.get(f)!).sort((x, y) => Number(ids.get(x.id)!.slice(5)) - Number(ids.get(y.id)!.slice(5)));
  for (const f of files) note(ids.get(f.id)!, f.id, 'files', f);
  for (const fa of L.fileAgents.get(agentId) ?? []) if (ids.get(fa.id)) note(ids.get(fa.id)!, fa.id, 'files_agents', fa);
  const groups = p.groupIds.map((g) => L.groupsById.get(g)!);
  for (const g of groups) note(ids.get(g.id)!, g.id, 'groups', g);
  for (const m of mcp.values()) note(ids.get(m.id)!, m.id, 'mcp_server', m);
  // group members that are agents of this archive, so a restore can map them
  for (const g of groups) {
    for (const mId of [...groupMembers(L, g), g.manager_agent_id].filter((x): x is string => typeof x === 'string')) {
      const f = ids.get(mId);
      if (f) idMap[f] = mId;
    }
  }
  const ext: JsonObject = {
    version: AV_EXT_VERSION,
    source_revision: info.revision,
    ids: idMap,
    rows,
    environment: env.map((e) => environmentJson(e)),
    identities: identities.map((i) =>
      identityJson(
        i,
        (L.identityBlocks.get(i.id) ?? []).map((b) => ids.get(b)).filter((x): x is string => !!x),
      ),
    ),
    archive: link ? archiveJson(link) : null,
    secrets: env.length ? 'redacted' : null,
    groups: groups
      .filter((g) => !whole.has(g.id))
      .map((g) =>
        groupJson(
          g,
          ids.get(g.id)!,
          ids,
          (L.groupBlocks.get(g.id) ?? []).filter((b) => L.blocksById.has(b)),
          groupMembers(L, g),
        ),
      ),
    group_ids: p.managedGroupIds.filter((g) => !whole.has(g)).map((g) => ids.get(g)!),
  };

  const doc: JsonObject = {
    agents: [], // replaced by the streamed agent below
    groups: groups
      .filter((g) => whole.has(g.id))
      .map((g) =>
        groupJson(
          g,
          ids.get(g.id)!,
          ids,
          (L.groupBlocks.get(g.id) ?? []).filter((b) => L.blocksById.has(b)),
          groupMembers(L, g),
        ),
      ),
    blocks: blocks.map((b) => blockJson(b, ids.get(b.id)!, L.blockTags.get(b.id))),
    files: files.map((f) => fileJson(f, ids.get(f.id)!, ids.get(f.source_id) ?? f.source_id)),
    sources: sources.map((s) => sourceJson(s, ids.get(s.id)!)),
    tools: tools.map((t) => toolJson(t, ids.get(t.id)!)),
    mcp_servers: [...mcp.values()].map((m) => mcpJson(m, ids.get(m.id)!)),
    skills: [],
    metadata: { revision_id: info.revision },
    created_at: '', // set below: the change key leaves it out
    [AV_EXT]: ext,
  };

  const restOf = (json: string) => json.slice(json.indexOf('"agents":[]') + '"agents":[]'.length); // ',"groups":…}'
  const emb = isObj(a.embedding_config) ? a.embedding_config : null;
  const archiveEmb = link && isObj(link.embedding_config) ? link.embedding_config : null;
  let dim = num(archiveEmb?.embedding_dim) ?? num(emb?.embedding_dim);
  if (o.reuse) {
    // the key takes the in-context ids as the agent row holds them: their file ids follow from
    // them and the order of the agent's messages, which the key's marker over the messages covers
    const keyHead = JSON.stringify(agentObjWith(inContextDb));
    const reused = await o.reuse({ head: keyHead, rest: restOf(JSON.stringify(doc)), archiveId: link ? (link.id as string) : null, dim });
    if (reused) return reused;
  }
  doc.created_at = o.createdAt;
  const rest = restOf(JSON.stringify(doc));

  // in-context ids → file ids (by position in sequence order), in one query
  const rankRows = inContextDb.length
    ? (
        await tx.query<{ id: string; rank: string }>(
          `SELECT id, rank FROM (SELECT id, row_number() OVER (ORDER BY sequence_id) - 1 AS rank FROM messages WHERE agent_id = $1 AND NOT is_deleted) m WHERE m.id = ANY($2::text[])`,
          [agentId, inContextDb],
        )
      ).rows
    : [];
  const rank = new Map(rankRows.map((r) => [r.id, Number(r.rank)]));
  const inContext: string[] = [];
  for (const mid of inContextDb) {
    const k = rank.get(mid);
    if (k === undefined) {
      await o.progress({ phase: 'warning', agentId, message: `agent ${JSON.stringify(a.name)} (${agentId}): in-context message ${mid} does not exist; left out of in_context_message_ids` });
      continue;
    }
    inContext.push(`message-${p.messageBase + k}`);
  }

  // Stream: {"agents":[{…agent…,"messages":[ …cursor… ]}], …rest of the document…}
  const head = JSON.stringify(agentObjWith(inContext));
  let messages = 0;
  const batch = o.batchSize ?? 1000;
  async function* afStream(): AsyncGenerator<Buffer> {
    yield Buffer.from(`{"agents":[${head.slice(0, -1)},"messages":[`, 'utf8');
    const sql = `WITH r AS (SELECT m.*, row_number() OVER (ORDER BY m.sequence_id) - 1 AS rank FROM messages m WHERE m.agent_id = $1 AND NOT m.is_deleted)
                 SELECT r.*, ar.rank AS approval_rank FROM r LEFT JOIN r ar ON ar.id = r.approval_request_id ORDER BY r.rank`;
    for await (const rowsBatch of iterateBatches(tx, sql, [agentId], batch)) {
      const parts: string[] = [];
      for (const m of rowsBatch) {
        const fileId = `message-${p.messageBase + Number(m.rank)}`;
        const approval = m.approval_rank !== null && m.approval_rank !== undefined ? `message-${p.messageBase + Number(m.approval_rank)}` : null;
        parts.push(JSON.stringify(messageJson(m, fileId, agentFile, ids, approval)));
      }
      yield Buffer.from((messages > 0 ? ',' : '') + parts.join(','), 'utf8');
      messages += rowsBatch.length;
      await o.progress({ phase: 'messages', agentId, name: a.name, index: o.index, total: o.total, rows: messages });
    }
    yield Buffer.from(`]}]${rest}`, 'utf8');
  }
  const entry = agentEntryName(agentId);
  await writer.addStream(entry, afStream(), { mediaType: 'application/json' });
  if (messages !== p.messageCount) {
    // cannot happen inside one snapshot; a guard against a broken isolation level
    throw new AgentVaultError('export-inconsistent', `agent ${agentId}: counted ${p.messageCount} messages but read ${messages}; the export snapshot was not consistent`);
  }

  // passages
  let passages = 0;
  let passagesEntry: string | null = null;
  let vectorsEntry: string | null = null;
  if (link) {
    const cnt = await tx.query<{ n: number; maxdim: number | null }>(
      `SELECT count(*)::int AS n, max(vector_dims(embedding)) AS maxdim FROM archival_passages WHERE archive_id = $1 AND NOT is_deleted`,
      [link.id],
    );
    passages = cnt.rows[0].n;
    if (passages > 0) {
      if (dim === null || !Number.isInteger(dim) || dim < 1) dim = await trueDimension(tx, link.id, cnt.rows[0].maxdim);
      passagesEntry = passagesEntryName(agentId);
      vectorsEntry = vectorsEntryName(agentId);
      const vdim = dim ?? 1;
      const observer = o.onAgentVectors
        ? await o.onAgentVectors({
            agentId,
            archiveId: link.id as string,
            dim: vdim,
            count: passages,
            createdAt: o.createdAt,
            embeddedIds: async () =>
              (await tx.query<{ id: string }>(`SELECT id FROM archival_passages WHERE archive_id = $1 AND NOT is_deleted AND embedding IS NOT NULL ORDER BY id`, [link.id])).rows.map((r) => r.id),
            vectors: (pids) => readVectorsById(tx, info, link.id as string, vdim, pids),
          })
        : null;
      await writePassages(tx, writer, info, link.id as string, agentId, vdim, passages, passagesEntry, vectorsEntry, {
        batchSize: o.batchSize ?? 500,
        progress: (n) => o.progress({ phase: 'passages', agentId, name: a.name, index: o.index, total: o.total, rows: n }),
        observer,
      });
      await observer?.end();
    }
  }

  // the chunks of the agent's files (source_passages) with their embeddings (docs/FORMAT.md §7.3)
  const filePassages = await writeFilePassages(
    tx,
    writer,
    info,
    {
      agentId,
      fileIds: p.fileIds,
      localId: (dbId) => ids.get(dbId),
      batchSize: o.batchSize ?? 500,
      progress: (n) => o.progress({ phase: 'passages', agentId, name: a.name, index: o.index, total: o.total, rows: n }),
    },
    (fdim, count, entryName) =>
      writeVectorsEntry(
        tx,
        writer,
        info,
        { from: 'source_passages p WHERE p.file_id = ANY($1::text[]) AND NOT p.is_deleted', param: p.fileIds, what: `agent ${agentId}: file chunk` },
        fdim,
        count,
        entryName,
        {
          batchSize: o.batchSize ?? 500,
          progress: (n) => o.progress({ phase: 'passages', agentId, name: a.name, index: o.index, total: o.total, rows: n }),
        },
      ),
  );

  return {
    id: agentId,
    name: a.name ?? null,
    agent_type: a.agent_type ?? null,
    entry,
    counts: {
      messages,
      in_context_messages: inContext.length,
      blocks: p.blockIds.length,
      tools: p.toolIds.length,
      passages,
      groups: p.groupIds.length,
      files: p.fileIds.length,
      ...(filePassages ? { file_passages: filePassages.count } : {}),
    },
    embedding:
      emb || archiveEmb
        ? {
            model: ((archiveEmb?.embedding_model ?? emb?.embedding_model) as string | undefined) ?? null,
            dim: passages > 0 ? dim : (num(emb?.embedding_dim) ?? null),
            endpoint_type: ((archiveEmb?.embedding_endpoint_type ?? emb?.embedding_endpoint_type) as string | undefined) ?? null,
          }
        : null,
    llm: isObj(a.llm_config) ? { model: (a.llm_config.model as string | undefined) ?? null } : null,
    passages_entry: passagesEntry,
    vectors_entry: vectorsEntry,
    ...(filePassages ? { file_passages_entry: filePassages.passagesEntry, file_vectors_entry: filePassages.vectorsEntry } : {}),
    file_id: agentFile,
  } as ManifestAgent;
}
