/**
 * A small OpenAI-compatible server on 127.0.0.1 for the real Letta server in the tests: every
 * model and embedding call Letta makes lands here, nothing leaves the machine.
 *
 *   GET  /v1/models             gpt-4o-mini and the OpenAI embedding models
 *   POST /v1/chat/completions   deterministic tool calls (plain and streamed)
 *   POST /v1/embeddings         deterministic unit vectors of the requested dimension
 *
 * Chat policy (decided from the request alone, so it is the same for every agent type):
 *   - A user message may carry directives `[[tool NAME {json args}]]`. Within one turn (the
 *     messages after the last real user message), the stub calls the directives' tools in order,
 *     one per request, each once, the first not yet called that the request offers; then it ends
 *     the turn.
 *   - Ending a turn: `send_message` when the agent has it (memgpt agents), otherwise a plain
 *     assistant reply (letta_v1_agent), both with the text "stub reply: …".
 *   - A sleeptime agent (it has `memory_finish_edits`) ignores directives it sees in the
 *     transcript it is given and calls `memory_finish_edits` once.
 *   - A request without tools (summaries) gets a plain text reply.
 *   Missing required arguments are filled from the tool's JSON schema (request_heartbeat = true
 *   except on send_message, inner thoughts "stub", strings "", …).
 *
 * Embeddings: a bag of words hashed into `dimensions` buckets (FNV-1a, signed), L2-normalised, so
 * equal texts embed identically and a query made of a passage's words ranks that passage first.
 *
 * The server runs in its own Node process (startOpenAiStub spawns this file with
 * --serve-openai-stub): the tests run the CLI with spawnSync, which blocks the test process's
 * event loop for seconds, while Letta keeps calling the models in the background (file
 * processing after an import, sleeptime agents). A stub inside the test process would leave
 * those calls unanswered and Letta would log connection errors that are the harness's, not
 * Letta's. The calls it served are read back over HTTP (GET /_stub/calls).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const STUB_CHAT_MODEL = 'gpt-4o-mini';
export const STUB_EMBEDDING_MODELS: Record<string, number> = {
  'text-embedding-3-small': 1536,
  'text-embedding-ada-002': 1536,
  'text-embedding-3-large': 3072,
};

export interface StubCall {
  path: string;
  model?: string;
  tools: string[];
  stream: boolean;
  /** the tool the stub called, or 'text' for a plain reply */
  answered: string;
  /** the text of the turn's user message the stub read directives from */
  userText?: string;
  inputs?: number;
}

export interface OpenAiStub {
  /** e.g. http://127.0.0.1:41234/v1 */
  baseUrl: string;
  /** the calls served so far, in order */
  calls(): Promise<StubCall[]>;
  /** requests the stub does not serve (answered 404) */
  unknown(): Promise<string[]>;
  close(): Promise<void>;
}

interface ChatMessage {
  role: string;
  content?: unknown;
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}
interface ToolDef {
  type: string;
  function: { name: string; parameters?: { properties?: Record<string, { type?: string | string[] }>; required?: string[] } };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p === 'object' && 'text' in p ? String((p as { text: unknown }).text) : '')).join('\n');
  return '';
}

const DIRECTIVE = /\[\[tool ([A-Za-z_][A-Za-z0-9_]*)(?:\s+(\{[\s\S]*?\}))?\]\]/g;

export function directivesOf(text: string): { name: string; args: Record<string, unknown> }[] {
  const out: { name: string; args: Record<string, unknown> }[] = [];
  // Letta wraps user text as JSON ({"type":"user_message","message":"…"}): undo its escaping.
  let t = text;
  try {
    const j = JSON.parse(text) as { message?: unknown };
    if (j && typeof j.message === 'string') t = j.message;
  } catch {
    /* not JSON */
  }
  for (const m of t.matchAll(DIRECTIVE)) {
    let args: Record<string, unknown> = {};
    if (m[2]) {
      try {
        args = JSON.parse(m[2]) as Record<string, unknown>;
      } catch {
        args = {};
      }
    }
    out.push({ name: m[1], args });
  }
  return out;
}

function isSyntheticUser(text: string): boolean {
  // Letta's own user-role messages inside a turn: heartbeats and system alerts.
  return /"type"\s*:\s*"(heartbeat|system_alert|login)"/.test(text);
}

function fillArgs(tool: ToolDef | undefined, given: Record<string, unknown>, heartbeat: boolean): Record<string, unknown> {
  const args: Record<string, unknown> = { ...given };
  const params = tool?.function.parameters;
  for (const name of params?.required ?? []) {
    if (name in args) continue;
    const t = params?.properties?.[name]?.type;
    const type = Array.isArray(t) ? t[0] : t;
    if (name === 'request_heartbeat') args[name] = heartbeat;
    else if (name === 'thinking' || name === 'inner_thoughts') args[name] = 'stub';
    else if (type === 'boolean') args[name] = false;
    else if (type === 'integer' || type === 'number') args[name] = 0;
    else if (type === 'array') args[name] = [];
    else if (type === 'object') args[name] = {};
    else args[name] = '';
  }
  if (params?.properties && 'request_heartbeat' in params.properties && !('request_heartbeat' in given)) args.request_heartbeat = heartbeat;
  return args;
}

interface Decision {
  kind: 'tool' | 'text';
  name?: string;
  args?: Record<string, unknown>;
  text?: string;
  userText?: string;
}

export function decide(messages: ChatMessage[], tools: ToolDef[]): Decision {
  const names = new Set(tools.map((t) => t.function.name));
  if (tools.length === 0) return { kind: 'text', text: 'stub summary' };
  // The turn: messages after the last real user message.
  let anchor = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === 'user' && !isSyntheticUser(textOf(messages[i].content))) {
      anchor = i;
      break;
    }
  }
  const userText = anchor >= 0 ? textOf(messages[anchor].content) : '';
  const called: string[] = [];
  for (const m of messages.slice(anchor + 1)) for (const tc of m.tool_calls ?? []) called.push(tc.function.name);
  const byName = (n: string) => tools.find((t) => t.function.name === n);
  if (names.has('memory_finish_edits')) {
    if (called.includes('memory_finish_edits')) return { kind: 'text', text: 'stub sleeptime done', userText };
    return { kind: 'tool', name: 'memory_finish_edits', args: fillArgs(byName('memory_finish_edits'), {}, false), userText };
  }
  if (called.includes('send_message')) return { kind: 'text', text: 'stub reply: done', userText };
  // The directives not yet called in this turn (by name, in order), then the first of them this
  // request offers: Letta's tool rules change the offered tools from request to request (e.g. a
  // run_first rule offers only that tool at first, void.v2.af).
  const remaining = directivesOf(userText);
  for (const n of called) {
    const k = remaining.findIndex((d) => d.name === n);
    if (k >= 0) remaining.splice(k, 1);
  }
  const next = remaining.find((d) => names.has(d.name));
  if (next) return { kind: 'tool', name: next.name, args: fillArgs(byName(next.name), next.args, true), userText };
  const summary = `stub reply: ${called.length ? `ran ${called.join(', ')}` : 'hello'}`;
  if (names.has('send_message')) return { kind: 'tool', name: 'send_message', args: fillArgs(byName('send_message'), { message: summary }, false), userText };
  return { kind: 'text', text: summary, userText };
}

let idSeq = 0;
function completionBody(model: string, d: Decision) {
  const id = `chatcmpl-stub-${++idSeq}`;
  const message =
    d.kind === 'tool'
      ? { role: 'assistant', content: null, tool_calls: [{ id: `call_stub_${idSeq}`, type: 'function', function: { name: d.name!, arguments: JSON.stringify(d.args ?? {}) } }] }
      : { role: 'assistant', content: d.text ?? '' };
  return {
    id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, finish_reason: d.kind === 'tool' ? 'tool_calls' : 'stop', logprobs: null }],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  };
}

function streamChunks(model: string, d: Decision, includeUsage: boolean): string[] {
  const id = `chatcmpl-stub-${++idSeq}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: unknown, finish: string | null, usage?: unknown) =>
    JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: usage ? [] : [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...(usage ? { usage } : {}) });
  const out: string[] = [];
  if (d.kind === 'tool') {
    out.push(chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: `call_stub_${idSeq}`, type: 'function', function: { name: d.name, arguments: '' } }] }, null));
    out.push(chunk({ tool_calls: [{ index: 0, function: { arguments: JSON.stringify(d.args ?? {}) } }] }, null));
    out.push(chunk({}, 'tool_calls'));
  } else {
    out.push(chunk({ role: 'assistant', content: '' }, null));
    out.push(chunk({ content: d.text ?? '' }, null));
    out.push(chunk({}, 'stop'));
  }
  if (includeUsage) out.push(chunk(null, null, { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 }));
  return out;
}

function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The stub's embedding of `text` (exported so tests can compute expected vectors). */
export function stubEmbedding(text: string, dim: number): number[] {
  const v = new Array<number>(dim).fill(0);
  const words = text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? [];
  for (const w of words) {
    const h = fnv1a(w);
    v[h % dim] += (h & 0x80000000) !== 0 ? -1 : 1;
  }
  // A small text-specific component so that texts without words still differ and are non-zero.
  const digest = createHash('sha256').update(text).digest();
  for (let i = 0; i < 8; i++) v[digest[i] % dim] += 0.01;
  const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks).toString('utf8');
  return raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
}

/** Serves the stub in this process (the child startOpenAiStub spawns); resolves with its port. */
async function serveOpenAiStub(): Promise<{ port: number; server: http.Server }> {
  const calls: StubCall[] = [];
  const unknown: string[] = [];
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://stub');
      const p = url.pathname.replace(/\/+$/, '');
      try {
        if (req.method === 'GET' && p === '/_stub/calls') return send(200, { calls, unknown });
        if (req.method === 'GET' && p === '/v1/models') {
          const created = 1700000000;
          const data = [STUB_CHAT_MODEL, ...Object.keys(STUB_EMBEDDING_MODELS)].map((id) => ({ id, object: 'model', created, owned_by: 'agent-vault-stub' }));
          calls.push({ path: p, tools: [], stream: false, answered: 'models' });
          return send(200, { object: 'list', data });
        }
        if (req.method === 'GET' && p.startsWith('/v1/models/')) {
          const id = decodeURIComponent(p.slice('/v1/models/'.length));
          return send(200, { id, object: 'model', created: 1700000000, owned_by: 'agent-vault-stub' });
        }
        if (req.method === 'POST' && p === '/v1/embeddings') {
          const body = await readJson(req);
          const input = body.input;
          const texts = Array.isArray(input) ? input.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))) : [String(input ?? '')];
          const model = String(body.model ?? 'text-embedding-3-small');
          const dim = typeof body.dimensions === 'number' ? body.dimensions : (STUB_EMBEDDING_MODELS[model] ?? 1536);
          calls.push({ path: p, model, tools: [], stream: false, answered: 'embeddings', inputs: texts.length });
          const b64 = body.encoding_format === 'base64';
          return send(200, {
            object: 'list',
            model,
            data: texts.map((t, index) => {
              const e = stubEmbedding(t, dim);
              return { object: 'embedding', index, embedding: b64 ? Buffer.from(new Float32Array(e).buffer).toString('base64') : e };
            }),
            usage: { prompt_tokens: texts.length, total_tokens: texts.length },
          });
        }
        if (req.method === 'POST' && p === '/v1/chat/completions') {
          const body = await readJson(req);
          const messages = (body.messages ?? []) as ChatMessage[];
          const tools = ((body.tools ?? []) as ToolDef[]).filter((t) => t?.function?.name);
          const model = String(body.model ?? STUB_CHAT_MODEL);
          const d = decide(messages, tools);
          const stream = body.stream === true;
          calls.push({ path: p, model, tools: tools.map((t) => t.function.name), stream, answered: d.kind === 'tool' ? d.name! : 'text', userText: d.userText });
          if (!stream) return send(200, completionBody(model, d));
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          const includeUsage = !!(body.stream_options as { include_usage?: boolean } | undefined)?.include_usage;
          for (const c of streamChunks(model, d, includeUsage)) res.write(`data: ${c}\n\n`);
          res.end('data: [DONE]\n\n');
          return;
        }
        unknown.push(`${req.method} ${url.pathname}`);
        send(404, { error: { message: `not served by the test stub: ${req.method} ${url.pathname}`, type: 'invalid_request_error' } });
      } catch (e) {
        send(500, { error: { message: (e as Error).message, type: 'server_error' } });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  // never the first to close an idle keep-alive connection (the client's pool expires it)
  server.keepAliveTimeout = 10 * 60_000;
  server.headersTimeout = 10 * 60_000 + 1000;
  return { port: (server.address() as AddressInfo).port, server };
}

const SERVE_FLAG = '--serve-openai-stub';

/** Starts the stub in its own Node process on 127.0.0.1 and a free port; close() ends it. */
export async function startOpenAiStub(): Promise<OpenAiStub> {
  const repo = path.resolve(__dirname, '..', '..');
  const child = spawn(process.execPath, ['--import', 'tsx', __filename, SERVE_FLAG], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'] });
  const killChild = () => child.kill('SIGKILL');
  process.once('exit', killChild);
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error('the OpenAI stub did not start within 30 s')), 30_000);
    lines.once('line', (l) => {
      clearTimeout(timer);
      const m = /^listening (\d+)$/.exec(l.trim());
      if (m) resolve(Number(m[1]));
      else reject(new Error(`the OpenAI stub said: ${l}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the OpenAI stub exited (${code}) before listening`));
    });
  });
  const base = `http://127.0.0.1:${port}`;
  const state = async () => (await (await fetch(`${base}/_stub/calls`)).json()) as { calls: StubCall[]; unknown: string[] };
  return {
    baseUrl: `${base}/v1`,
    calls: async () => (await state()).calls,
    unknown: async () => (await state()).unknown,
    close: () =>
      new Promise<void>((resolve) => {
        process.removeListener('exit', killChild);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin!.end(); // the child exits when its stdin closes
      }),
  };
}

if (process.argv.includes(SERVE_FLAG)) {
  void serveOpenAiStub().then(
    ({ port, server }) => {
      // the parent holds our stdin: when it closes (close(), or the parent died) the stub ends
      process.stdin.resume();
      process.stdin.on('end', () => {
        server.closeAllConnections();
        server.close(() => process.exit(0));
      });
      process.stdout.write(`listening ${port}\n`);
    },
    (e: Error) => {
      process.stdout.write(`error ${e.message}\n`);
      process.exit(1);
    },
  );
}
