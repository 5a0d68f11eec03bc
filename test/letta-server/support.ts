/**
 * Shared pieces of the tests against the real Letta server (test/letta-server/*.test.ts).
 */
import { strict as assert } from 'node:assert';
import type { LettaServer } from '../helpers/letta-server';
import { STUB_CHAT_MODEL } from './openai-stub';

export type Obj = Record<string, any>;

/** Letta's LettaMessage list → one entry per stored message (id, role, text), in order. */
export function storedMessages(list: Obj[]): { id: string; role: string; text: string }[] {
  const out: { id: string; role: string; text: string }[] = [];
  const roleOf: Record<string, string> = {
    system_message: 'system',
    user_message: 'user',
    assistant_message: 'assistant',
    reasoning_message: 'assistant',
    hidden_reasoning_message: 'assistant',
    tool_call_message: 'assistant',
    approval_request_message: 'assistant',
    tool_return_message: 'tool',
    approval_response_message: 'approval',
  };
  for (const m of list) {
    const last = out[out.length - 1];
    const text = typeof m.content === 'string' ? m.content : Array.isArray(m.content) ? m.content.map((p: Obj) => p?.text ?? '').join('') : '';
    if (last && last.id === m.id) {
      if (!last.text) last.text = text;
      continue;
    }
    out.push({ id: m.id, role: roleOf[m.message_type] ?? m.message_type, text });
  }
  return out;
}

/** All messages of an agent through GET /v1/agents/{id}/messages, oldest first. */
export async function listMessages(letta: LettaServer, agentId: string): Promise<Obj[]> {
  const out: Obj[] = [];
  let after: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ limit: '1000', order: 'asc', use_assistant_message: 'false' });
    if (after) q.set('after', after);
    const page = await letta.api<Obj[]>('GET', `/v1/agents/${agentId}/messages?${q}`);
    out.push(...page);
    if (page.length < 1000) return out;
    after = page[page.length - 1].id;
  }
}

/** The stub's chat model and an OpenAI embedding model of the given dimension, as Letta lists them. */
export async function stubConfigs(letta: LettaServer, embeddingDim = 1536): Promise<{ llm: Obj; embedding: Obj }> {
  const llms = await letta.api<Obj[]>('GET', '/v1/models/');
  const llm = llms.find((m) => m.model === STUB_CHAT_MODEL && String(m.model_endpoint).startsWith(letta.stub.baseUrl));
  assert.ok(llm, `Letta lists the stub's ${STUB_CHAT_MODEL}`);
  const embs = await letta.api<Obj[]>('GET', '/v1/models/embedding');
  const embedding = embs.find((m) => m.embedding_dim === embeddingDim && String(m.embedding_endpoint).startsWith(letta.stub.baseUrl));
  assert.ok(embedding, `Letta lists a stub embedding model of dimension ${embeddingDim}`);
  const pick = (o: Obj, drop: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !drop.includes(k)));
  return {
    llm: pick(llm, ['name', 'display_name', 'provider_type', 'model_type', 'max_context_window']),
    embedding: pick(embedding, ['name', 'display_name', 'provider_type', 'provider_name', 'model_type']),
  };
}

/** Points an agent's model and embeddings at the stub (what a user does on a server with other providers). */
export async function useStubModels(letta: LettaServer, agentId: string): Promise<void> {
  const a = await letta.api<Obj>('GET', `/v1/agents/${agentId}`);
  const { llm, embedding } = await stubConfigs(letta, a.embedding_config?.embedding_dim ?? 1536);
  await letta.api('PATCH', `/v1/agents/${agentId}`, { llm_config: { ...llm, context_window: Math.min(a.llm_config?.context_window ?? 128000, 128000) }, embedding_config: embedding });
}

/** Sends one user message and returns Letta's response (LettaResponse). */
export async function sendMessage(letta: LettaServer, agentId: string, text: string): Promise<Obj> {
  return letta.api<Obj>('POST', `/v1/agents/${agentId}/messages`, { messages: [{ role: 'user', content: text }] });
}

/** The reply text of a LettaResponse: the assistant message, or send_message's argument. */
export function replyText(resp: Obj): string {
  for (const m of resp.messages ?? []) {
    if (m.message_type === 'assistant_message') return typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
    if (m.message_type === 'tool_call_message' && m.tool_call?.name === 'send_message') return JSON.parse(m.tool_call.arguments).message;
  }
  return '';
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Outbound attempts Letta 0.16.8 makes at every start (refused by the sink, never sent). */
export const KNOWN_STARTUP_OUTBOUND = [
  // letta/server/rest_api/app.py lifespan: nltk.download("punkt_tab") always fetches NLTK's index
  // first; Letta catches the failure and goes on.
  'CONNECT raw.githubusercontent.com:443',
];
