/**
 * Letta's plain link tables of an agent: `blocks_agents`, `tools_agents`, `sources_agents` and
 * `agents_tags` (the .af holds them as the agent's block_ids, tool_ids, source_ids/folder_ids
 * and tags; the export writes them in ./agents.ts agentJson).
 */
import { dedupe, strs, tableWriter } from './common';

export const blocksAgentsWriter = tableWriter(['blocks_agents'], async (ctx) => {
  const { model, A, restored, ins } = ctx;
  // link tables
  const blockLabel = (bf: string): string => {
    const id = A.blocks.get(bf)!;
    return A.linkedBlocks.has(bf) ? (A.blockLabels.get(id) ?? model.blocks.get(bf)!.obj.label) : model.blocks.get(bf)!.obj.label;
  };
  await ins(
    'blocks_agents',
    ['agent_id', 'block_id', 'block_label'],
    restored.flatMap((a) => [...new Set(strs(a.obj.block_ids))].map((bf) => ({ agent_id: A.agents.get(a.fileId), block_id: A.blocks.get(bf), block_label: blockLabel(bf) }))),
  );
});

export const toolsAgentsWriter = tableWriter(['tools_agents'], async (ctx) => {
  const { A, restored, ins } = ctx;
  await ins('tools_agents', ['agent_id', 'tool_id'], dedupe(restored.flatMap((a) => strs(a.obj.tool_ids).map((tf) => ({ agent_id: A.agents.get(a.fileId), tool_id: A.tools.get(tf) })))));
});

export const sourcesAgentsWriter = tableWriter(['sources_agents'], async (ctx) => {
  const { A, restored, ins } = ctx;
  await ins(
    'sources_agents',
    ['agent_id', 'source_id'],
    dedupe(restored.flatMap((a) => [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)].map((sf) => ({ agent_id: A.agents.get(a.fileId), source_id: A.sources.get(sf) })))),
  );
});

export const agentsTagsWriter = tableWriter(['agents_tags'], async (ctx) => {
  const { A, restored, ins } = ctx;
  await ins('agents_tags', ['agent_id', 'tag'], dedupe(restored.flatMap((a) => strs(a.obj.tags).map((tag) => ({ agent_id: A.agents.get(a.fileId), tag })))));
});
