/**
 * Through Letta's own import and export, and agents made by Letta itself (real Letta 0.16.8):
 *   4. every .af the project writes (`convert` of each fixture, `unpack` of a snapshot) is
 *      accepted by Letta's POST /v1/agents/import; Letta's GET /v1/agents/{id}/export of a
 *      restored agent passes `agent-vault validate`;
 *   5. agents created and messaged through Letta's REST API → `agent-vault export` → `restore`
 *      into a second Letta database → a second Letta server loads and runs them; `diff` of the
 *      two exports reports no change.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli';
import { createLettaDatabase, startLettaServer, type LettaServer } from '../helpers/letta-server';
import { fixtures, FIXTURES_DIR } from '../helpers/paths';
import { startOpenAiStub, STUB_CHAT_MODEL, type OpenAiStub } from './openai-stub';
import { replyText, sendMessage, stubConfigs, waitFor, type Obj } from './support';

/**
 * Fields Letta's GET /v1/agents/{id}/export fills with its schema defaults where the database holds
 * NULL (docs/RESTORE.md, "Letta's own export"): the project's snapshot keeps the NULL.
 */
const LETTA_EXPORT_DEFAULTS: Record<string, string[]> = {
  agent: ['max_files_open', 'per_file_view_window_char_limit'],
  llm_config: ['return_logprobs', 'return_token_ids'],
};

async function importAf(letta: LettaServer, file: string, opts: { embedding?: string } = {}): Promise<{ status: number; body: string }> {
  const form = new FormData();
  form.append('file', new Blob([readFileSync(file)], { type: 'application/json' }), path.basename(file));
  // what a user does on a server with other providers: Letta's import embeds the file's documents
  // with this embedding handle instead of the file's own endpoint (api.openai.com, not reachable here)
  if (opts.embedding) form.append('embedding', opts.embedding);
  const r = await letta.request('POST', '/v1/agents/import', form);
  return { status: r.status, body: (await r.text()).slice(0, 1500) };
}

/** Waits until Letta has processed every file of every folder (completed or error); the files in error are returned. */
async function filesSettled(letta: LettaServer, timeoutMs = 180_000): Promise<Obj[]> {
  return waitFor(
    'Letta to process the imported files',
    async () => {
      const all: Obj[] = [];
      for (const f of await letta.api<Obj[]>('GET', '/v1/folders/?limit=1000')) all.push(...(await letta.api<Obj[]>('GET', `/v1/folders/${f.id}/files?limit=1000`)));
      return all.every((x) => x.processing_status === 'completed' || x.processing_status === 'error') ? all.filter((x) => x.processing_status === 'error') : undefined;
    },
    timeoutMs,
  );
}

describe('real Letta server: Letta import/export and agents made by Letta', function () {
  this.timeout(600_000);
  let stub: OpenAiStub;
  let a: LettaServer;
  let dir: string;
  let b: LettaServer | undefined; // a second server holding restored fixtures (part 4)

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-letta-made-'));
    stub = await startOpenAiStub();
    a = await startLettaServer({ stub });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await stub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('5. agents made through Letta’s REST API → export → restore into a second Letta → it loads and runs them; diff of the exports: no change', async () => {
    const logFrom = a.log().length;
    const models = await a.api<Obj[]>('GET', '/v1/models/');
    const llm = models.find((m) => m.model === STUB_CHAT_MODEL)!;
    const embs = await a.api<Obj[]>('GET', '/v1/models/embedding');
    const emb = embs.find((m) => m.embedding_dim === 1536 && String(m.embedding_endpoint).startsWith(stub.baseUrl))!;
    const made: Obj[] = [];
    for (const [name, agentType] of [
      ['made-by-letta-v1', 'letta_v1_agent'],
      ['made-by-letta-memgpt-v2', 'memgpt_v2_agent'],
    ]) {
      const ag = await a.api<Obj>('POST', '/v1/agents/', {
        name,
        agent_type: agentType,
        model: llm.handle,
        embedding: emb.handle,
        memory_blocks: [
          { label: 'human', value: `The user of ${name}.` },
          { label: 'persona', value: `I am ${name}.` },
        ],
        tags: ['vault-test', name],
      });
      const resp = await sendMessage(a, ag.id, `Hello ${name}, remember the green kingfisher.`);
      assert.match(replyText(resp), /stub reply/);
      await a.api('POST', `/v1/agents/${ag.id}/archival-memory`, { text: `${name} saw a green kingfisher by the river` });
      made.push(ag);
    }
    // a folder with a file Letta itself chunked and embedded (source_passages), attached to the
    // first agent: the snapshot carries the chunks with their embeddings and the restore writes
    // them back, so Letta B's file search finds them without processing the file again
    const folder = await a.api<Obj>('POST', '/v1/folders/', { name: 'made-by-letta-notes', embedding: emb.handle });
    const form = new FormData();
    const notes = Array.from({ length: 40 }, (_, i) => `Note ${i}: the heron ${i % 2 ? 'waits' : 'fishes'} at the weir number ${i}.`).join('\n');
    form.append('file', new Blob([`The kingfisher nests in the clay bank.\n${notes}\n`], { type: 'text/plain' }), 'river-notes.txt');
    const up = await a.request('POST', `/v1/folders/${folder.id}/upload`, form);
    assert.equal(up.status, 200, `upload to Letta A: ${await up.clone().text()}`);
    const uploaded = (await up.json()) as Obj;
    const fileA = await waitFor('Letta A to process the uploaded file', async () => {
      const f = await a.api<Obj>('GET', `/v1/folders/${folder.id}/files/${uploaded.id}`);
      assert.notEqual(f.processing_status, 'error', `Letta A failed to process the file: ${f.error_message}`);
      return f.processing_status === 'completed' ? f : undefined;
    });
    await a.api('PATCH', `/v1/agents/${made[0].id}/folders/attach/${folder.id}`);
    const chunksA = await a.api<Obj[]>('GET', `/v1/folders/${folder.id}/passages?limit=1000&order=asc`);
    assert.ok(chunksA.length > 0, 'Letta A chunked the file');

    const snapA = path.join(dir, 'made-a.avsnap');
    const e = runCli(['export', '--db', a.db.url, ...made.flatMap((m) => ['--agent', m.id]), '--out', snapA, '--force', '-q']);
    assert.equal(e.code, 0, `export from Letta A: ${e.stderr}`);

    const dbB = await createLettaDatabase();
    const c = await startLettaServer({ stub, db: dbB });
    try {
      const r = runCli(['restore', snapA, '--db', dbB.url, '-q']);
      assert.equal(r.code, 0, `restore into Letta B: ${r.stderr}`);
      const snapB = path.join(dir, 'made-b.avsnap');
      const e2 = runCli(['export', '--db', dbB.url, ...made.flatMap((m) => ['--agent', m.id]), '--out', snapB, '--force', '-q']);
      assert.equal(e2.code, 0, `export from Letta B: ${e2.stderr}`);
      const d = runCli(['diff', snapA, snapB, '--exit-code']);
      assert.equal(d.code, 0, `diff of the two exports reports no change:\n${d.stdout}${d.stderr}`);
      for (const m of made) {
        const got = await c.api<Obj>('GET', `/v1/agents/${m.id}`);
        assert.equal(got.name, m.name);
        const before = await a.api<Obj[]>('GET', `/v1/agents/${m.id}/messages?limit=1000&use_assistant_message=false`);
        const after = await c.api<Obj[]>('GET', `/v1/agents/${m.id}/messages?limit=1000&use_assistant_message=false`);
        assert.deepEqual(
          after.map((x) => [x.id, x.message_type]),
          before.map((x) => [x.id, x.message_type]),
          `${m.name}: messages`,
        );
        const resp = await sendMessage(c, m.id, 'Hello again after the restore.');
        assert.match(replyText(resp), /stub reply/, `${m.name} runs on Letta B`);
        const found = await c.api<Obj>('GET', `/v1/agents/${m.id}/archival-memory/search?query=${encodeURIComponent(`${m.name} saw a green kingfisher by the river`)}&top_k=1`);
        assert.match(String(found.results?.[0]?.content), /green kingfisher/, `${m.name}: archival search on Letta B finds the restored passage`);
      }
      // the file's chunks came back with their embeddings: Letta B lists them, keeps the file
      // processed, and its semantic file search finds a chunk
      const fileB = await c.api<Obj>('GET', `/v1/folders/${folder.id}/files/${uploaded.id}`);
      assert.equal(fileB.processing_status, 'completed', 'the restored file stays processed');
      assert.equal(fileB.total_chunks, fileA.total_chunks);
      assert.equal(fileB.chunks_embedded, fileA.chunks_embedded);
      const chunksB = await c.api<Obj[]>('GET', `/v1/folders/${folder.id}/passages?limit=1000&order=asc`);
      assert.deepEqual(
        chunksB.map((x) => [x.id, x.text, x.file_id]),
        chunksA.map((x) => [x.id, x.text, x.file_id]),
        'file chunks on Letta B',
      );
      const search = await sendMessage(c, made[0].id, '[[tool semantic_search_files {"query": "The kingfisher nests in the clay bank."}]] Search the notes.');
      const ret = (search.messages ?? []).find((m: Obj) => m.message_type === 'tool_return_message' && m.name === 'semantic_search_files');
      assert.ok(ret, `semantic_search_files ran on Letta B: ${JSON.stringify(search.messages?.map((m: Obj) => m.message_type))}`);
      assert.equal(ret.status, 'success', `semantic_search_files on Letta B: ${ret.tool_return}`);
      assert.match(String(ret.tool_return), /kingfisher nests in the clay bank/, 'Letta B’s file search finds the restored chunk');
      assert.deepEqual(c.serverErrors(), [], 'no server error in Letta B’s log');
      assert.deepEqual(a.serverErrors(logFrom), [], 'no server error in Letta A’s log');
    } finally {
      await c.stop();
    }
  });
  it('4. every fixture converted by `agent-vault convert` is accepted by Letta’s POST /v1/agents/import', async () => {
    const logFrom = a.log().length;
    const outFrom = a.outbound.length;
    const refused: string[] = [];
    const { embedding } = await stubConfigs(a, 1536);
    for (const fx of fixtures()) {
      const out = path.join(dir, `convert-${fx.file}`);
      const c = runCli(['convert', fx.path, '--to', 'v2', '--output', out, '--force']);
      assert.equal(c.code, 0, `convert ${fx.file}: ${c.stderr}`);
      // the files' documents are embedded with the stub's model (their own endpoint is not reachable here)
      const r = await importAf(a, out, { embedding: String(embedding.handle) });
      if (r.status !== 200) refused.push(`${fx.file}: HTTP ${r.status} ${r.body}`);
    }
    assert.deepEqual(refused, [], `Letta refused converted files:\n${refused.join('\n')}`);
    // Letta processes imported files in the background: wait for it, so its log is complete here
    const failed = await filesSettled(a);
    assert.deepEqual(
      failed.map((f) => `${f.file_name}: ${f.error_message}`),
      [],
      'Letta processed every imported file',
    );
    assert.deepEqual(a.serverErrors(logFrom), [], 'no server error in Letta’s log');
    assert.deepEqual(a.outbound.slice(outFrom), [], 'no outbound request');
  });

  it('4. every .af of `unpack` (snapshot of restored fixtures, a sleeptime group included) is accepted by Letta’s POST /v1/agents/import', async () => {
    const logFrom = a.log().length;
    const db = await createLettaDatabase();
    b = await startLettaServer({ stub, db });
    for (const f of ['loop.v2.af', 'lettabot-builder.v2.af']) {
      const r = runCli(['restore', path.join(FIXTURES_DIR, f), '--db', db.url, '-q']);
      assert.equal(r.code, 0, `restore ${f}: ${r.stderr}`);
    }
    const snap = path.join(dir, 'restored.avsnap');
    const e = runCli(['export', '--db', db.url, '--all', '--out', snap, '--force', '-q']);
    assert.equal(e.code, 0, `export: ${e.stderr}`);
    const out = path.join(dir, 'unpacked');
    const u = runCli(['unpack', snap, '--output', out]);
    assert.equal(u.code, 0, `unpack: ${u.stderr}`);
    const files = readdirSync(out).filter((x) => x.endsWith('.af'));
    assert.ok(files.length >= 2, `unpack wrote .af files: ${files.join(', ')}`);
    const refused: string[] = [];
    const { embedding } = await stubConfigs(a, 1536);
    for (const f of files) {
      const r = await importAf(a, path.join(out, f), { embedding: String(embedding.handle) });
      if (r.status !== 200) refused.push(`${f}: HTTP ${r.status} ${r.body}`);
    }
    assert.deepEqual(refused, [], `Letta refused unpacked files:\n${refused.join('\n')}`);
    await filesSettled(a);
    assert.deepEqual(a.serverErrors(logFrom), [], 'no server error in Letta’s log');
  });

  it('4. Letta’s GET /v1/agents/{id}/export of each restored agent passes `agent-vault validate`', async () => {
    assert.ok(b, 'the fixtures were restored into the second server (previous test)');
    const agents = await b.api<Obj[]>('GET', '/v1/agents/?limit=100');
    assert.ok(agents.length >= 3, `restored agents listed: ${agents.map((x) => x.name).join(', ')}`);
    const invalid: string[] = [];
    for (const ag of agents) {
      const r = await b.request('GET', `/v1/agents/${ag.id}/export`);
      assert.equal(r.status, 200, `Letta exports ${ag.name}: HTTP ${r.status}`);
      const file = path.join(dir, `letta-export-${ag.id}.af`);
      writeFileSync(file, Buffer.from(await r.arrayBuffer()));
      const v = runCli(['validate', file]);
      if (v.code !== 0) invalid.push(`${ag.name}: exit ${v.code}\n${v.stdout}${v.stderr}`);
    }
    assert.deepEqual(invalid, [], 'validate accepts every Letta export');
    // diff between Letta's export and the project's snapshot of the same database: only what
    // docs/RESTORE.md lists as Letta's export filling in or leaving out.
    const snap = path.join(dir, 'restored-again.avsnap');
    const e = runCli(['export', '--db', b.db.url, '--all', '--out', snap, '--force', '-q']);
    assert.equal(e.code, 0, `export: ${e.stderr}`);
    const unexpected: string[] = [];
    for (const ag of agents) {
      const d = runCli(['diff', path.join(dir, `letta-export-${ag.id}.af`), snap, '--agent', ag.id, '--format', 'json']);
      assert.equal(d.code, 0, `diff ${ag.name}: ${d.stderr}`);
      const res = JSON.parse(d.stdout) as Obj;
      for (const x of res.agents as Obj[]) {
        for (const [cat, n] of Object.entries(x.counts as Record<string, number>)) {
          if (!n) continue;
          const changes: Obj[] = x[cat]?.changes;
          if (!Array.isArray(changes)) {
            unexpected.push(`${ag.name}: ${cat}: ${n} change(s): ${JSON.stringify(x[cat]).slice(0, 600)}`);
            continue;
          }
          for (const c of changes) {
            const ok = c.b === null && (LETTA_EXPORT_DEFAULTS[cat] ?? []).includes(c.field);
            if (!ok) unexpected.push(`${ag.name}: ${cat}.${c.field}: ${JSON.stringify(c.a)} (Letta) → ${JSON.stringify(c.b)} (agent-vault)`);
          }
        }
      }
    }
    assert.deepEqual(unexpected, [], 'diff(Letta export, agent-vault snapshot) shows only what docs/RESTORE.md lists');
    assert.deepEqual(b.serverErrors(), [], 'no server error in Letta’s log');
  });
});
