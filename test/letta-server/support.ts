/**
 * Shared pieces of the tests against the real Letta server (test/letta-server/*.test.ts).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { checkLettaInstalled, type LettaServer } from '../helpers/letta-server';
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
    approval_request_message: 'approval',
    tool_return_message: 'tool',
    approval_response_message: 'approval',
  };
  for (const m of list) {
    const last = out[out.length - 1];
    const text = typeof m.content === 'string' ? m.content : Array.isArray(m.content) ? m.content.map((p: Obj) => p?.text ?? '').join('') : '';
    const role = roleOf[m.message_type] ?? m.message_type;
    if (last && last.id === m.id) {
      if (!last.text) last.text = text;
      // A stored approval request with text is listed as a reasoning message and then the
      // approval_request_message of the same id (letta/schemas/message.py, to_letta_messages):
      // the stored role is the approval's.
      if (role === 'approval') last.role = role;
      continue;
    }
    out.push({ id: m.id, role, text });
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
export async function stubConfigs(letta: LettaServer, embeddingDim = 1536, opts: { exactDim?: boolean } = {}): Promise<{ llm: Obj; embedding: Obj }> {
  const llms = await letta.api<Obj[]>('GET', '/v1/models/');
  const llm = llms.find((m) => m.model === STUB_CHAT_MODEL && String(m.model_endpoint).startsWith(letta.stub.baseUrl));
  assert.ok(llm, `Letta lists the stub's ${STUB_CHAT_MODEL}`);
  const embs = await letta.api<Obj[]>('GET', '/v1/models/embedding');
  const stubEmbs = embs.filter((m) => String(m.embedding_endpoint).startsWith(letta.stub.baseUrl));
  // An agent whose dimension no served model has (void.v2.af: 2000) is pointed at the 1536-d
  // model, as a user would on a server without its provider (an .af carries no passages).
  const embedding = stubEmbs.find((m) => m.embedding_dim === embeddingDim) ?? (opts.exactDim ? undefined : stubEmbs.find((m) => m.embedding_dim === 1536));
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

/**
 * What Letta shows for values of an agent file, computed by Letta's own code (the pinned
 * virtualenv's Python): llm_config and embedding_config as Letta's pydantic models validate them
 * (model rules such as put_inner_thoughts_in_kwargs = false for claude-3-7-sonnet), and the text
 * Letta's message list shows for a stored user message (letta/system.py unpack_message: the text
 * of a packed {"type": "user_message", "message": …}). One Python process for all values.
 */
export function lettaView(input: { llm_configs: Obj[]; embedding_configs: Obj[]; user_texts: string[] }): { llm_configs: Obj[]; embedding_configs: Obj[]; user_texts: string[] } {
  const { venv } = checkLettaInstalled();
  const py = [
    'import json, sys, logging',
    'logging.disable(logging.CRITICAL)',
    'from letta.schemas.llm_config import LLMConfig',
    'from letta.schemas.embedding_config import EmbeddingConfig',
    'from letta.system import unpack_message',
    'x = json.load(sys.stdin)',
    'out = {',
    '  "llm_configs": [LLMConfig(**c).model_dump(mode="json") for c in x["llm_configs"]],',
    '  "embedding_configs": [EmbeddingConfig(**c).model_dump(mode="json") for c in x["embedding_configs"]],',
    '  "user_texts": [unpack_message(t) for t in x["user_texts"]],',
    '}',
    'sys.stdout.write("\\n@@LETTA_VIEW@@" + json.dumps(out))',
  ].join('\n');
  const r = spawnSync(path.join(venv, 'bin', 'python'), ['-c', py], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { PATH: process.env.PATH, HOME: os.tmpdir(), LANG: 'C.UTF-8' },
  });
  const at = r.stdout?.lastIndexOf('@@LETTA_VIEW@@') ?? -1;
  assert.ok(r.status === 0 && at >= 0, `Letta's Python could not validate the values (exit ${r.status}): ${r.stderr?.slice(-2000)}`);
  return JSON.parse(r.stdout.slice(at + '@@LETTA_VIEW@@'.length));
}
