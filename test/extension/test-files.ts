/*
 * Agent files made from fixtures for the extension tests. A broken one for the language tests (in-host and e2e): a real .af v2 fixture with two
 * problems Letta's import does not check — a dangling tool id and an orphaned tool call in the
 * context window — pretty-printed so each problem is on its own line.
 */
export const BROKEN_DANGLING_ID = 'tool-99';
export const BROKEN_CALL_ID = 'call-orphaned-1';

export function brokenAgentFileText(fixtureText: string): string {
  const doc = JSON.parse(fixtureText) as { agents: Array<Record<string, unknown> & { tool_ids: string[]; messages: unknown[]; in_context_message_ids: string[] }> };
  const a = doc.agents[0];
  a.tool_ids.push(BROKEN_DANGLING_ID);
  a.messages.push({
    type: 'message',
    id: 'message-900',
    role: 'assistant',
    content: [],
    tool_calls: [{ id: BROKEN_CALL_ID, type: 'function', function: { name: 'web_search', arguments: '{"query": "agent vault"}' } }],
    agent_id: a.id,
  });
  a.in_context_message_ids.push('message-900');
  return JSON.stringify(doc, null, 2) + '\n';
}

/** What `modifiedAgentFileText` changes (the diff tests check each of these). */
export const MODIFIED = {
  promptLine: 'Always answer in haiku.',
  block: 'persona',
  blockLine: 'I am Loop, and I keep a vault.',
  embeddingModel: 'text-embedding-3-large',
  tool: 'note',
  toolLine: '# checked by the vault',
  rule: { type: 'run_first', tool_name: 'web_search' },
};

/** loop.v2.af with a longer system prompt, an edited block, a new embedding model, an edited tool and a new rule. */
export function modifiedAgentFileText(fixtureText: string): string {
  const doc = JSON.parse(fixtureText) as {
    agents: Array<Record<string, unknown> & { system: string; embedding_config: Record<string, unknown>; tool_rules: unknown[] }>;
    blocks: Array<{ label: string; value: string }>;
    tools: Array<{ name: string; source_code: string | null }>;
  };
  const a = doc.agents[0];
  a.system = `${a.system}\n${MODIFIED.promptLine}`;
  a.embedding_config = { ...a.embedding_config, embedding_model: MODIFIED.embeddingModel, embedding_dim: 3072 };
  a.tool_rules = [...(a.tool_rules ?? []), MODIFIED.rule];
  const b = doc.blocks.find((x) => x.label === MODIFIED.block)!;
  b.value = `${b.value}\n${MODIFIED.blockLine}`;
  const t = doc.tools.find((x) => x.name === MODIFIED.tool)!;
  t.source_code = `${t.source_code}\n${MODIFIED.toolLine}\n`;
  return JSON.stringify(doc, null, 2) + '\n';
}
