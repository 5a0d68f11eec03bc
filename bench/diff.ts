/**
 * bench/diff: two snapshot archives of one agent with 200k messages and 50k passages each
 * (written with the project's archive writer), then `diffPaths` on them in a fresh process,
 * which prints the time and its peak RSS. Target: under 2 s, memory bounded (it does not grow
 * with the archive's size).
 *
 *   npx tsx bench/diff.ts [--messages 200000] [--passages 50000] [--dim 1536] [--keep]
 *
 * B differs from A by known amounts (1% of messages edited/removed/appended, 0.5% of passages
 * each removed/rewritten/re-embedded/added, one memory block and the temperature) and the run
 * fails unless the diff finds exactly those.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createArchiveWriter, agentEntryName, passagesEntryName, vectorsEntryName } from '../src/format/archive';
import { encodeVectorHeader } from '../src/format/vectors';
import { diffPaths } from '../src/diff';

interface Params {
  messages: number;
  passages: number;
  dim: number;
}

const AGENT_ID = 'agent-3b1f6a52-9c1e-4d0b-a7a4-2f9e1c0d8e11';
const WORDS =
  'the of and to in is that for it as with was on be by this are or at from have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three'.split(
    ' ',
  );

function rng(seed: number): () => number {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

function sentence(r: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(r() * WORDS.length)]);
  return out.join(' ');
}

const hex = (i: number, width = 12): string => i.toString(16).padStart(width, '0');
const msgId = (i: number): string => `message-0c7d2e4a-51b8-4f3c-9a6e-${hex(i)}`;
const passageId = (i: number): string => `passage-5e1a9b3c-7d2f-4c8e-b1a4-${hex(i)}`;
const ROLES = ['user', 'assistant', 'tool', 'assistant'] as const;

function message(i: number, edited: boolean): string {
  const r = rng(i + 1);
  const role = ROLES[i % 4];
  const text = sentence(r, 40 + Math.floor(r() * 60)) + (edited ? ' (corrected later)' : '');
  const toolCall = role === 'assistant' && i % 8 === 1;
  return JSON.stringify({
    type: 'message',
    role,
    content: [{ type: 'text', text, signature: null }],
    name: null,
    otid: null,
    sender_id: null,
    batch_item_id: null,
    group_id: null,
    id: msgId(i),
    model: role === 'user' ? null : 'gpt-4o-mini',
    agent_id: AGENT_ID,
    tool_calls: toolCall ? [{ id: `call_${hex(i, 8)}`, function: { name: 'archival_memory_search', arguments: JSON.stringify({ query: sentence(r, 5) }) }, type: 'function' }] : null,
    tool_call_id: role === 'tool' ? `call_${hex(i - 1, 8)}` : null,
    tool_returns: [],
    created_at: new Date(Date.UTC(2025, 0, 1) + i * 37_000).toISOString(),
    approve: null,
    approval_request_id: null,
    denial_reason: null,
    approvals: [],
  });
}

function passage(i: number, rewritten: boolean): string {
  const r = rng(1_000_000 + i);
  return JSON.stringify({
    id: passageId(i),
    text: sentence(r, 30 + Math.floor(r() * 40)) + (rewritten ? ' (revised)' : ''),
    tags: i % 5 === 0 ? ['notes'] : [],
    metadata: {},
    archive_id: 'archive-1d2c3b4a-0000-4000-8000-000000000001',
    organization_id: 'org-00000000-0000-4000-8000-000000000000',
    created_at: new Date(Date.UTC(2025, 0, 1) + i * 61_000).toISOString(),
  });
}

function vector(i: number, dim: number, reembedded: boolean): Float32Array {
  const r = rng(2_000_000 + i * 3 + (reembedded ? 1 : 0));
  const v = new Float32Array(dim);
  for (let k = 0; k < dim; k++) v[k] = r() - 0.5;
  return v;
}

interface Variant {
  name: 'a' | 'b';
  /** message index → 'edit' | 'drop' (B only) */
  msg(i: number): 'keep' | 'edit' | 'drop';
  msgAppended: number;
  pas(i: number): 'keep' | 'text' | 'vector' | 'drop';
  pasAppended: number;
  temperature: number;
  humanBlock: string;
}

function agentDoc(v: Variant, p: Params): { head: string; tail: string } {
  const agent = {
    id: AGENT_ID,
    name: 'bench-agent',
    agent_type: 'letta_v1_agent',
    system: 'You are a helpful agent with a long memory.\nBe brief.',
    description: 'benchmark agent',
    tags: [],
    llm_config: { model: 'gpt-4o-mini', model_endpoint_type: 'openai', model_endpoint: 'https://api.example.invalid/v1', context_window: 32000, temperature: v.temperature },
    embedding_config: { embedding_model: 'text-embedding-3-small', embedding_endpoint_type: 'openai', embedding_dim: p.dim, embedding_chunk_size: 300 },
    tool_rules: [{ tool_name: 'send_message', type: 'exit_loop' }],
    block_ids: ['block-0', 'block-1'],
    tool_ids: ['tool-0'],
    in_context_message_ids: [msgId(0)],
    tool_exec_environment_variables: {},
  };
  const docRest = {
    groups: [],
    blocks: [
      { id: 'block-0', label: 'human', value: v.humanBlock, limit: 5000 },
      { id: 'block-1', label: 'persona', value: 'I am a benchmark.', limit: 5000 },
    ],
    files: [],
    sources: [],
    tools: [
      {
        id: 'tool-0',
        name: 'send_message',
        source_code: 'def send_message(message: str):\n    return None\n',
        json_schema: { name: 'send_message', parameters: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] } },
      },
    ],
    mcp_servers: [],
    metadata: { revision_id: '1c28e167b74f' },
  };
  const a = JSON.stringify(agent);
  const rest = JSON.stringify(docRest);
  return { head: `{"agents":[${a.slice(0, -1)},"messages":[`, tail: `]}],${rest.slice(1)}` };
}

async function* messageStream(v: Variant, p: Params): AsyncGenerator<Buffer> {
  const { head, tail } = agentDoc(v, p);
  let parts: string[] = [head];
  let first = true;
  let size = head.length;
  const emit = (s: string): void => {
    parts.push(first ? s : `,${s}`);
    first = false;
    size += s.length + 1;
  };
  for (let i = 0; i < p.messages + v.msgAppended; i++) {
    const what = i < p.messages ? v.msg(i) : 'keep';
    if (what !== 'drop') emit(message(i, what === 'edit'));
    if (size > 1 << 20) {
      yield Buffer.from(parts.join(''), 'utf8');
      parts = [];
      size = 0;
    }
  }
  parts.push(tail);
  yield Buffer.from(parts.join(''), 'utf8');
}

async function* passageStream(v: Variant, p: Params): AsyncGenerator<Buffer> {
  let lines: string[] = [];
  for (let i = 0; i < p.passages + v.pasAppended; i++) {
    const what = i < p.passages ? v.pas(i) : 'keep';
    if (what === 'drop') continue;
    lines.push(passage(i, what === 'text'));
    if (lines.length >= 2000) {
      yield Buffer.from(lines.join('\n') + '\n', 'utf8');
      lines = [];
    }
  }
  if (lines.length) yield Buffer.from(lines.join('\n') + '\n', 'utf8');
}

/** The vector file: header, then one float32 row per passage line, in the same order. */
async function* vectorStream(v: Variant, p: Params, count: number): AsyncGenerator<Buffer> {
  yield encodeVectorHeader(p.dim, count);
  const rowsPerChunk = Math.max(1, Math.floor((1 << 20) / (p.dim * 4)));
  let chunk = Buffer.allocUnsafe(rowsPerChunk * p.dim * 4);
  let n = 0;
  for (let i = 0; i < p.passages + v.pasAppended; i++) {
    const what = i < p.passages ? v.pas(i) : 'keep';
    if (what === 'drop') continue;
    const row = vector(i, p.dim, what === 'vector');
    // float32 rows as the host stores them: little-endian on every platform Node supports here
    Buffer.from(row.buffer, row.byteOffset, row.byteLength).copy(chunk, n * p.dim * 4);
    if (++n === rowsPerChunk) {
      yield chunk;
      chunk = Buffer.allocUnsafe(rowsPerChunk * p.dim * 4);
      n = 0;
    }
  }
  if (n) yield chunk.subarray(0, n * p.dim * 4);
}

async function writeArchive(file: string, v: Variant, p: Params): Promise<{ messages: number; passages: number }> {
  let messages = 0;
  let passages = 0;
  for (let i = 0; i < p.messages + v.msgAppended; i++) if (i >= p.messages || v.msg(i) !== 'drop') messages++;
  for (let i = 0; i < p.passages + v.pasAppended; i++) if (i >= p.passages || v.pas(i) !== 'drop') passages++;
  const w = await createArchiveWriter(file, { overwrite: true });
  try {
    const entry = agentEntryName(AGENT_ID);
    await w.addStream(entry, messageStream(v, p), { mediaType: 'application/json' });
    await w.addStream(passagesEntryName(AGENT_ID), passageStream(v, p));
    await w.addStream(vectorsEntryName(AGENT_ID), vectorStream(v, p, passages));
    await w.finish({
      created_at: new Date().toISOString(),
      source: { kind: 'postgres', letta_revision: '1c28e167b74f' },
      agents: [
        {
          id: AGENT_ID,
          name: 'bench-agent',
          agent_type: 'letta_v1_agent',
          entry,
          counts: { messages, in_context_messages: 1, blocks: 2, tools: 1, passages, groups: 0, files: 0 },
          embedding: { model: 'text-embedding-3-small', dim: p.dim },
          llm: { model: 'gpt-4o-mini' },
          passages_entry: passagesEntryName(AGENT_ID),
          vectors_entry: vectorsEntryName(AGENT_ID),
        },
      ],
    });
  } catch (e) {
    await w.abort();
    throw e;
  }
  return { messages, passages };
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/** The timed part, in its own process so that its peak RSS is its own. */
async function runChild(a: string, b: string): Promise<void> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const r = await diffPaths(a, b);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  const d = r.agents[0];
  process.stdout.write(
    JSON.stringify({
      ms,
      cpuMs: (cpu.user + cpu.system) / 1000,
      maxRssMB: process.resourceUsage().maxRSS / 1024,
      heapUsedMB: process.memoryUsage().heapUsed / 1048576,
      counts: r.summary.counts,
      messages: { a: d.messages.a_count, b: d.messages.b_count, unchanged: d.messages.unchanged, edited: d.messages.edited, removed: d.messages.removed, appended: d.messages.appended },
      passages: { a: d.passages.a_count, b: d.passages.b_count, changed: d.passages.changed, vectors_changed: d.passages.vectors_changed, removed: d.passages.removed, added: d.passages.added },
      memory_blocks: d.memory_blocks.changed.map((x) => x.label),
      llm: d.llm_config.changes.map((c) => c.field),
    }) + '\n',
  );
}

async function main(): Promise<void> {
  if (process.argv[2] === '--run') return runChild(process.argv[3], process.argv[4]);
  const p: Params = { messages: arg('messages', 200_000), passages: arg('passages', 50_000), dim: arg('dim', 1536) };
  const keep = process.argv.includes('--keep');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'av-bench-diff-'));
  const A: Variant = { name: 'a', msg: () => 'keep', msgAppended: 0, pas: () => 'keep', pasAppended: 0, temperature: 0.7, humanBlock: 'The user is called Sam.' };
  const msgEvery = 100;
  const pasEvery = 200;
  const B: Variant = {
    name: 'b',
    msg: (i) => (i % msgEvery === 17 ? 'edit' : i % msgEvery === 67 ? 'drop' : 'keep'),
    msgAppended: Math.floor(p.messages / msgEvery),
    pas: (i) => (i % pasEvery === 50 ? 'drop' : i % pasEvery === 100 ? 'text' : i % pasEvery === 150 ? 'vector' : 'keep'),
    pasAppended: Math.floor(p.passages / pasEvery),
    temperature: 0.2,
    humanBlock: 'The user is called Sam.\nSam prefers short answers.',
  };
  const expected = {
    edited: Math.ceil(Math.max(0, p.messages - 17) / msgEvery),
    removed: Math.ceil(Math.max(0, p.messages - 67) / msgEvery),
    appended: B.msgAppended,
    pRemoved: Math.ceil(Math.max(0, p.passages - 50) / pasEvery),
    pText: Math.ceil(Math.max(0, p.passages - 100) / pasEvery),
    pVector: Math.ceil(Math.max(0, p.passages - 150) / pasEvery),
    pAdded: B.pasAppended,
  };
  try {
    const fa = path.join(dir, 'a.zip');
    const fb = path.join(dir, 'b.zip');
    let t = Date.now();
    const ca = await writeArchive(fa, A, p);
    const cb = await writeArchive(fb, B, p);
    const mb = (f: string): string => (statSync(f).size / 1048576).toFixed(1);
    console.log(
      `generated in ${((Date.now() - t) / 1000).toFixed(1)} s: A ${ca.messages} messages / ${ca.passages} passages (${mb(fa)} MiB), B ${cb.messages} / ${cb.passages} (${mb(fb)} MiB), embedding dim ${p.dim}`,
    );
    const runs: Array<{ ms: number; cpuMs: number; maxRssMB: number }> = [];
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 3; i++) {
      t = Date.now();
      const child = spawnSync(process.execPath, [...process.execArgv, __filename, '--run', fa, fb], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (child.status !== 0) throw new Error(`diff run failed (${child.status}): ${child.stderr}`);
      last = JSON.parse(child.stdout.trim().split('\n').pop()!);
      runs.push(last as { ms: number; cpuMs: number; maxRssMB: number });
      console.log(
        `run ${i + 1}: diff ${(last.ms as number).toFixed(0)} ms (CPU ${(last.cpuMs as number).toFixed(0)} ms, all threads), peak RSS ${(last.maxRssMB as number).toFixed(0)} MiB; load average ${os.loadavg()[0].toFixed(2)}`,
      );
    }
    const m = last.messages as Record<string, number>;
    const ps = last.passages as Record<string, number>;
    const problems: string[] = [];
    const want = (what: string, got: unknown, exp: unknown): void => {
      if (JSON.stringify(got) !== JSON.stringify(exp)) problems.push(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(exp)}`);
    };
    want('messages edited', m.edited, expected.edited);
    want('messages removed', m.removed, expected.removed);
    want('messages appended', m.appended, expected.appended);
    want('passages removed', ps.removed, expected.pRemoved);
    want('passages changed', ps.changed, expected.pText + expected.pVector);
    want('passages re-embedded', ps.vectors_changed, expected.pVector);
    want('passages added', ps.added, expected.pAdded);
    want('memory blocks', last.memory_blocks, ['human']);
    want('llm', last.llm, ['temperature']);
    console.log(`found: messages ${JSON.stringify(m)}; passages ${JSON.stringify(ps)}; blocks ${JSON.stringify(last.memory_blocks)}; llm ${JSON.stringify(last.llm)}`);
    const best = Math.min(...runs.map((r) => r.ms));
    const rss = Math.max(...runs.map((r) => r.maxRssMB));
    console.log(
      `bench:diff ${p.messages} messages + ${p.passages} passages (dim ${p.dim}) per side: best ${best.toFixed(0)} ms, median ${runs
        .map((r) => r.ms)
        .sort((x, y) => x - y)[1]
        .toFixed(0)} ms, peak RSS ${rss.toFixed(0)} MiB; target < 2000 ms: ${best < 2000 ? 'met' : 'MISSED'}`,
    );
    if (problems.length) {
      console.error(`wrong findings:\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    }
  } finally {
    if (keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
