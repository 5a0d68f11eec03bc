/**
 * bench/letta-vs-vault: moving one agent from one Letta database to another through Letta's own REST
 * API against Agent Vault (`agent-vault export` + `agent-vault restore`, the built CLI), measured in
 * the same run against the real Letta 0.16.8 server (scripts/provision-letta.sh) on the same PostgreSQL.
 *
 *   node scripts/build.mjs && npx tsx bench/letta-vs-vault.ts            # 10k and 50k messages, 5k passages
 *   npx tsx bench/letta-vs-vault.ts --messages 2000,5000 --passages 500  # other sizes
 *   (--concurrency 4: parallel requests of the REST client; --message-page 5000 --passage-page 1000;
 *   --no-one-by-one: leave out the one-passage-per-request import, which takes most of the run)
 *
 * Letta's ways, both through REST only:
 * - plain: `GET /v1/agents/{id}/export`, then `POST /v1/agents/import` on the target server. Letta
 *   0.16.8's export carries the agent's in-context messages only and no archival passages (it has no
 *   option to include the history: `agent_serialization_manager.export` writes `AgentSchema
 *   .from_agent_state`'s messages plus any missing in-context ones; `scrub_messages` only removes them).
 * - complete: the most a Letta user can move through the REST API. Export = the `.af` export, the whole
 *   message history paged with `GET /v1/agents/{id}/messages?order=asc&after=<cursor>` (Letta sets
 *   no maximum page size) and all archival passages paged with `GET /v1/agents/{id}/archival-memory`,
 *   these three in parallel. Import = `POST /v1/agents/import` of the `.af` with the paged history put
 *   back into its `messages` (the only REST route that writes historical messages: import creates
 *   every message of the file, `_init_with_no_messages` + `create_many_messages_async`; sending
 *   messages runs the model, and the hidden `/messages/capture` route stamps them with the current
 *   time), then every passage re-inserted, `--concurrency` at a time, either one per request
 *   (`POST /v1/agents/{id}/archival-memory`, text + tags + created_at) or in batches
 *   (`POST /v1/archives/{archive_id}/passages/batch` of 500, text + metadata + tags + created_at, into
 *   the agent's archive made by the first single insert). Letta embeds every re-inserted passage
 *   again (here through the local stub: nothing leaves the machine, and the stub answers at once).
 *
 * The source agent is written into a database built by Letta's own migrations with the project's
 * synthetic generator (src/letta/synth.ts; 1536-dim embeddings, model text-embedding-3-small), then
 * read back through Letta's REST API before anything is timed, so every way starts from data Letta
 * itself serves. Completeness = rows of the moved agent in the target database (messages, archival
 * passages) / rows of the source agent, and whether the texts are the same (messages: role and text
 * in order; passages: the set of texts). Target (issue 11): ours ≥ 10x faster, 100% complete.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openPg } from '../src/db/pg';
import { generateSyntheticDb } from '../src/letta/synth';
import { stopSharedTestPostgres } from '../test/helpers/global-pg';
import { startLettaServer, type LettaServer } from '../test/helpers/letta-server';
import { startOpenAiStub } from '../test/letta-server/openai-stub';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const BATCH = 500;

function listArg(name: string, def: number[]): number[] {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1].split(',').map(Number) : def;
}

function cli(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`agent-vault ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return (performance.now() - t0) / 1000;
}

interface Kept {
  messages: number;
  passages: number;
  /** md5 of the agent's messages' role and first text part, in order */
  messageText: string;
  /** md5 of the agent's passage texts, sorted */
  passageText: string;
}

async function counts(url: string, agentId: string): Promise<Kept> {
  const db = await openPg({ url });
  try {
    const m = await db.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(role || ':' || coalesce(content::json->0->>'text', ''), '|' ORDER BY sequence_id), '')) AS h
         FROM messages WHERE agent_id = $1 AND NOT is_deleted`,
      [agentId],
    );
    const p = await db.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(p.text, '|' ORDER BY p.text), '')) AS h
         FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id WHERE aa.agent_id = $1 AND NOT p.is_deleted`,
      [agentId],
    );
    return { messages: m.rows[0].n, passages: p.rows[0].n, messageText: m.rows[0].h, passageText: p.rows[0].h };
  } finally {
    await db.close();
  }
}

/** runs `fn` over `items`, `n` at a time */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** a REST client that counts the bytes it received */
class Client {
  bytes = 0;
  requests = 0;
  constructor(readonly server: LettaServer) {}
  async call<T>(method: string, p: string, body?: unknown): Promise<T> {
    const r = await this.server.request(method, p, body);
    const text = await r.text();
    this.requests++;
    this.bytes += Buffer.byteLength(text);
    if (!r.ok) throw new Error(`Letta ${method} ${p}: HTTP ${r.status} ${text.slice(0, 1000)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** one entry of Letta's `GET /v1/agents/{id}/messages` (a LettaMessage) */
interface LettaMessage {
  id: string;
  date: string;
  message_type: string;
  name?: string | null;
  otid?: string | null;
  sender_id?: string | null;
  is_err?: boolean | null;
  content?: string | { type: string; text?: string }[];
  reasoning?: string;
  source?: string;
  signature?: string | null;
  tool_call?: { name: string; arguments: string; tool_call_id: string };
  tool_calls?: { name: string; arguments: string; tool_call_id: string }[] | null;
  tool_return?: string;
  tool_call_id?: string;
  status?: string;
  stdout?: string[] | null;
  stderr?: string[] | null;
}

interface Passage {
  id: string;
  text: string;
  tags?: string[] | null;
  metadata?: Record<string, unknown> | null;
  created_at?: string | null;
}

const textParts = (c: LettaMessage['content']): { type: string; text?: string }[] => (typeof c === 'string' ? [{ type: 'text', text: c }] : (c ?? []));

/**
 * The `.af` messages (Letta's MessageSchema) a REST client can rebuild from the LettaMessages of
 * `GET /v1/agents/{id}/messages`: Letta splits one stored message into several LettaMessages with the
 * same id (reasoning, tool call, assistant text), so consecutive entries with one id are one message.
 * What the list endpoint does not return (a message's model, step, run) cannot be put back.
 */
function toAfMessages(list: LettaMessage[], agentFileId: string): { dbId: string; msg: Record<string, unknown> }[] {
  const out: { dbId: string; msg: Record<string, unknown> }[] = [];
  for (const m of list) {
    let cur = out.length && out[out.length - 1].dbId === m.id ? out[out.length - 1].msg : undefined;
    if (!cur) {
      const role = m.message_type === 'system_message' ? 'system' : m.message_type === 'user_message' ? 'user' : m.message_type === 'tool_return_message' ? 'tool' : 'assistant';
      cur = { type: 'message', role, content: [], name: m.name ?? null, otid: m.otid ?? null, sender_id: m.sender_id ?? null, agent_id: agentFileId, created_at: m.date };
      out.push({ dbId: m.id, msg: cur });
    }
    const content = cur.content as unknown[];
    switch (m.message_type) {
      case 'system_message':
      case 'user_message':
      case 'assistant_message':
        content.push(...textParts(m.content));
        break;
      case 'reasoning_message':
        content.push(m.source === 'reasoner_model' ? { type: 'reasoning', reasoning: m.reasoning, is_native: true, signature: m.signature ?? null } : { type: 'text', text: m.reasoning });
        break;
      case 'tool_call_message': {
        const calls = m.tool_calls ?? (m.tool_call ? [m.tool_call] : []);
        cur.tool_calls = [...((cur.tool_calls as unknown[]) ?? []), ...calls.map((c) => ({ id: c.tool_call_id, type: 'function', function: { name: c.name, arguments: c.arguments } }))];
        break;
      }
      case 'tool_return_message':
        content.push({ type: 'text', text: m.tool_return ?? '' });
        cur.tool_call_id = m.tool_call_id;
        cur.tool_returns = [{ tool_call_id: m.tool_call_id, status: m.status, stdout: m.stdout ?? null, stderr: m.stderr ?? null }];
        break;
      default:
        throw new Error(`the bench cannot rebuild a ${m.message_type} (message ${m.id}) from the REST list`);
    }
  }
  return out;
}

interface RestExport {
  af: { agents: Record<string, unknown>[] } & Record<string, unknown>;
  messages: LettaMessage[];
  passages: Passage[];
  inContext: string[];
  seconds: number;
  bytes: number;
  requests: number;
}

/** the `.af`, the whole message history and every archival passage, through REST, in parallel */
async function restExport(src: LettaServer, agentId: string, msgPage: number, passagePage: number): Promise<RestExport> {
  const c = new Client(src);
  const t0 = performance.now();
  const pageMessages = async (): Promise<LettaMessage[]> => {
    const all: LettaMessage[] = [];
    for (let after: string | undefined; ;) {
      const page = await c.call<LettaMessage[]>('GET', `/v1/agents/${agentId}/messages?order=asc&limit=${msgPage}&include_err=true${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      all.push(...page);
      if (new Set(page.map((m) => m.id)).size < msgPage) return all;
      after = page[page.length - 1].id;
    }
  };
  const pagePassages = async (): Promise<Passage[]> => {
    const all: Passage[] = [];
    for (let after: string | undefined; ;) {
      const page = await c.call<Passage[]>('GET', `/v1/agents/${agentId}/archival-memory?ascending=true&limit=${passagePage}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      all.push(...page);
      if (page.length < passagePage) return all;
      after = page[page.length - 1].id;
    }
  };
  const [af, agent, messages, passages] = await Promise.all([
    c.call<RestExport['af']>('GET', `/v1/agents/${agentId}/export`),
    c.call<{ message_ids: string[] }>('GET', `/v1/agents/${agentId}`),
    pageMessages(),
    pagePassages(),
  ]);
  return { af, messages, passages, inContext: agent.message_ids, seconds: (performance.now() - t0) / 1000, bytes: c.bytes, requests: c.requests };
}

/** the exported `.af` with the whole paged history as its messages, in-context ids mapped onto it */
function withHistory(e: RestExport): Buffer {
  const agent = e.af.agents[0];
  const rebuilt = toAfMessages(e.messages, agent.id as string);
  const fileId = new Map<string, string>();
  rebuilt.forEach((r, i) => {
    r.msg.id = `message-${i}`;
    fileId.set(r.dbId, `message-${i}`);
  });
  const missing = e.inContext.filter((id) => !fileId.has(id));
  if (missing.length) throw new Error(`in-context messages not in the paged history: ${missing.join(', ')}`);
  const af = { ...e.af, agents: [{ ...agent, messages: rebuilt.map((r) => r.msg), in_context_message_ids: e.inContext.map((id) => fileId.get(id)!) }, ...e.af.agents.slice(1)] };
  return Buffer.from(JSON.stringify(af));
}

async function restImportAf(dst: LettaServer, af: Buffer, name: string): Promise<string> {
  const form = new FormData();
  form.append('file', new Blob([af], { type: 'application/json' }), name);
  const imp = await dst.request('POST', '/v1/agents/import', form);
  const body = await imp.text();
  if (!imp.ok) throw new Error(`Letta import: HTTP ${imp.status} ${body.slice(0, 1000)}`);
  return (JSON.parse(body) as { agent_ids: string[] }).agent_ids[0];
}

/**
 * every passage back into the imported agent's archival memory. The first goes alone: Letta makes
 * the agent's archive on its first insert (get_or_create_default_archive_for_agent_async), and
 * parallel first inserts would each make one.
 */
async function restInsertPassages(dst: LettaServer, agentId: string, passages: Passage[], batched: boolean, concurrency: number): Promise<number> {
  if (!passages.length) return 0;
  const c = new Client(dst);
  const one = (p: Passage) => c.call('POST', `/v1/agents/${agentId}/archival-memory`, { text: p.text, tags: p.tags ?? undefined, created_at: p.created_at ?? undefined });
  await one(passages[0]);
  const rest = passages.slice(1);
  if (!batched) {
    await pool(rest, concurrency, async (p) => {
      await one(p);
    });
    return c.requests;
  }
  const [archive] = await c.call<{ id: string }[]>('GET', `/v1/archives?agent_id=${agentId}`);
  const batches: Passage[][] = [];
  for (let i = 0; i < rest.length; i += BATCH) batches.push(rest.slice(i, i + BATCH));
  await pool(batches, concurrency, async (b) => {
    await c.call('POST', `/v1/archives/${archive.id}/passages/batch`, {
      passages: b.map((p) => ({ text: p.text, metadata: p.metadata ?? undefined, tags: p.tags ?? undefined, created_at: p.created_at ?? undefined })),
    });
  });
  return c.requests;
}

interface Row {
  size: string;
  tool: string;
  export: number;
  import: number;
  total: number;
  fileMB: number;
  messages: string;
  passages: string;
  note: string;
}

/** rows kept; when all rows are there, whether their texts are the same as the source's */
const kept = (got: Kept, want: Kept): Pick<Row, 'messages' | 'passages'> => ({
  messages: `${got.messages}/${want.messages}${got.messages === want.messages && got.messageText !== want.messageText ? ' (text differs)' : ''}`,
  passages: `${got.passages}/${want.passages}${got.passages === want.passages && got.passageText !== want.passageText ? ' (text differs)' : ''}`,
});

const line = (r: Row): string => `| ${r.size} | ${r.tool} | ${r.export.toFixed(2)} | ${r.import.toFixed(2)} | ${r.total.toFixed(2)} | ${r.fileMB.toFixed(1)} | ${r.messages} | ${r.passages} |`;

/** Letta 0.16.8 logs at ERROR level when request_embeddings takes over 2 s of wall-clock time */
const BLOCKING = /DIAGNOSTIC: BLOCKING DETECTED/;

async function main(): Promise<void> {
  const messageSizes = listArg('messages', [10_000, 50_000]);
  const [passages] = listArg('passages', [5_000]);
  const [concurrency] = listArg('concurrency', [4]);
  const [msgPage] = listArg('message-page', [5_000]);
  const [passagePage] = listArg('passage-page', [1_000]);
  // the one-passage-per-request route takes ~0.15-0.4 s per passage here; --no-one-by-one leaves it out
  const oneByOne = !process.argv.includes('--no-one-by-one');
  const work = mkdtempSync(path.join(tmpdir(), 'av-bench-letta-'));
  const stub = await startOpenAiStub();
  let src: LettaServer | undefined;
  let dst: LettaServer | undefined;
  const rows: Row[] = [];
  const add = (r: Row): void => {
    rows.push(r);
    console.error(`${line(r)} ${r.note}`);
  };
  const outbound: string[] = [];
  let seen = 0;
  /** attempts to reach another host since the last call, with the step that made them */
  const checkOutbound = (step: string): void => {
    const all = [...(src?.outbound ?? []), ...(dst?.outbound ?? [])];
    if (all.length > seen) outbound.push(`${step}: ${all.slice(seen).join(', ')}`);
    seen = all.length;
  };
  try {
    src = await startLettaServer({ stub });
    dst = await startLettaServer({ stub });
    for (const [i, n] of messageSizes.entries()) {
      const logFrom = [src.log().length, dst.log().length];
      const db = await openPg({ url: src.db.url });
      let agentId: string;
      try {
        const r = await generateSyntheticDb(db, { agents: 1, messagesPerAgent: n, passagesPerAgent: passages, dim: 1536, seed: 11 + i, embeddingModel: 'text-embedding-3-small' });
        agentId = r.agentIds[0];
      } finally {
        await db.close();
      }
      checkOutbound('start');
      const want = await counts(src.db.url, agentId);
      await src.api('GET', `/v1/agents/${agentId}`); // Letta serves the agent
      const size = `${n.toLocaleString('en')} msgs + ${passages.toLocaleString('en')} passages`;

      // Letta, plain: REST export, then REST import into the target server.
      let t0 = performance.now();
      const exp = await src.request('GET', `/v1/agents/${agentId}/export`);
      if (!exp.ok) throw new Error(`Letta export: HTTP ${exp.status} ${(await exp.text()).slice(0, 1000)}`);
      const af = Buffer.from(await exp.arrayBuffer());
      const tExp = (performance.now() - t0) / 1000;
      writeFileSync(path.join(work, `letta-${n}.af`), af);
      t0 = performance.now();
      const importedId = await restImportAf(dst, af, `letta-${n}.af`);
      const tImp = (performance.now() - t0) / 1000;
      add({
        size,
        tool: 'Letta REST export + import',
        export: tExp,
        import: tImp,
        total: tExp + tImp,
        fileMB: af.length / 1048576,
        ...kept(await counts(dst.db.url, importedId), want),
        note: '2 requests',
      });
      checkOutbound('plain export + import');

      // Letta, complete: .af + paged history + paged passages; import with the history, re-insert passages.
      const e = await restExport(src, agentId, msgPage, passagePage);
      checkOutbound('complete export');
      for (const batched of oneByOne ? [false, true] : [true]) {
        const stubBefore = (await stub.calls()).length;
        t0 = performance.now();
        const full = withHistory(e);
        const id = await restImportAf(dst, full, `letta-${n}-full.af`);
        const tAf = (performance.now() - t0) / 1000;
        checkOutbound('import of the .af with history');
        const reqs = await restInsertPassages(dst, id, e.passages, batched, concurrency);
        const tFull = (performance.now() - t0) / 1000;
        checkOutbound(`passages ${batched ? 'in batches' : 'one by one'}`);
        const embeds = (await stub.calls()).slice(stubBefore).filter((c) => c.answered === 'embeddings');
        const embedded = embeds.reduce((a, c) => a + (c.inputs ?? 0), 0);
        add({
          size,
          tool: `Letta REST, complete (${batched ? `passages in batches of ${BATCH}` : 'one passage per request'})`,
          export: e.seconds,
          import: tFull,
          total: e.seconds + tFull,
          fileMB: e.bytes / 1048576,
          ...kept(await counts(dst.db.url, id), want),
          note:
            `export ${e.requests} requests; import: .af with history ${tAf.toFixed(2)} s, ` +
            `${reqs} passage requests (${concurrency} in parallel), ${embeds.length} embedding requests to the stub for ${embedded} texts`,
        });
      }

      // Agent Vault: export, then restore into the target server's database.
      const snap = path.join(work, `vault-${n}.avsnap`);
      const tVExp = cli(['export', '--db', src.db.url, '--agent', agentId, '--out', snap, '--force', '-q']);
      const tVRes = cli(['restore', snap, '--db', dst.db.url, '-q']);
      add({
        size,
        tool: 'agent-vault export + restore',
        export: tVExp,
        import: tVRes,
        total: tVExp + tVRes,
        fileMB: statSync(snap).size / 1048576,
        ...kept(await counts(dst.db.url, agentId), want),
        note: 'embeddings kept as stored',
      });
      await dst.api('GET', `/v1/agents/${agentId}`); // Letta serves the restored agent
      const errs = [...src.serverErrors(logFrom[0]), ...dst.serverErrors(logFrom[1])];
      const slow = errs.filter((e) => BLOCKING.test(e)).length;
      if (slow) console.error(`Letta logged ${slow} "request_embeddings took over 2 s" diagnostics (ERROR level, not failures)`);
      // the harness also counts records with " 500 " in them, e.g. Letta's INFO "Created 500 passages"
      const real = errs.filter((e) => !BLOCKING.test(e) && /(^|\s)(ERROR|CRITICAL)(\s|:|\])|Traceback \(most recent call last\)/.test(e));
      if (real.length) console.error(`Letta logged errors:\n${real.join('\n')}`);
      checkOutbound('agent-vault');
    }
  } finally {
    await dst?.stop();
    await src?.stop();
    await stub.close();
    await stopSharedTestPostgres();
    rmSync(work, { recursive: true, force: true });
  }
  if (outbound.length) console.error(`Letta tried to reach other hosts (refused by the harness's sink):\n${outbound.join('\n')}`);
  console.log(`REST client: ${concurrency} requests in parallel, message pages of ${msgPage}, passage pages of ${passagePage}`);
  console.log('| data | way | export s | import/restore s | total s | MB moved | messages kept | passages kept |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(line(r));
  for (const r of rows) console.log(`${r.size}, ${r.tool}: ${r.note}`);
  for (const size of new Set(rows.map((r) => r.size))) {
    const of = rows.filter((r) => r.size === size);
    const v = of.find((r) => r.tool.startsWith('agent-vault'))!;
    for (const l of of.filter((r) => r !== v)) {
      const speed = l.total / v.total;
      console.log(`${size}: against ${l.tool}: ${speed >= 1 ? `agent-vault ${speed.toFixed(1)}x faster` : `agent-vault takes ${(1 / speed).toFixed(1)}x Letta's time`}`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
