/**
 * Restores proved against the real Letta server (letta 0.16.8, scripts/provision-letta.sh), one
 * server for this file, its database built by Letta's own migrations:
 *   2. every fixture in ../shared/fixtures/af/ restored with `agent-vault restore` into that one
 *      database is returned by Letta's REST API as Letta would show the file: fixtures whose agent
 *      names are already taken go in with --on-conflict=copy and get Letta's "<name>_copy" names;
 *      a tool already in the database is kept (--tools keep, the plan says so) and Letta shows it;
 *      llm/embedding configs and user message texts are compared with what Letta's own code
 *      (its pydantic models, unpack_message) makes of the file's values;
 *   3. restored agents run: a user message gets a reply, a memory edit persists, archival memory
 *      is written and searched, a sleeptime group's turn advances, an agent restored without any
 *      message (ezra) answers; no server error in Letta's log.
 * (The schema checks are in schema.test.ts; Letta's own import/export in letta-made.test.ts.)
 * Models: the OpenAI-compatible stub (openai-stub.ts); nothing leaves the machine.
 */
import { strict as assert } from 'node:assert';
import { readAgentFile, toV2 } from '../../src/format/af';
import type { AgentFileV2 } from '../../src/format/types';
import { runCli } from '../helpers/cli';
import { startLettaServer, type LettaServer } from '../helpers/letta-server';
import { fixtures, type FixtureInfo } from '../helpers/paths';
import { startOpenAiStub, type OpenAiStub } from './openai-stub';
import { lettaView, listMessages, replyText, sendMessage, storedMessages, useStubModels, waitFor, type Obj } from './support';

describe('real Letta server: schema, restore → load, restore → run', function () {
  this.timeout(600_000);
  let stub: OpenAiStub;
  let letta: LettaServer;
  const restored = new Map<string, { code: number; stderr: string; doc: AgentFileV2; agents: Map<string, string> }>();

  before(async function () {
    stub = await startOpenAiStub();
    letta = await startLettaServer({ stub });
    await computeLettaViews();
  });
  after(async () => {
    await letta?.stop();
    await stub?.close();
  });

  describe('2. restore → load: every fixture, checked through Letta’s REST API', () => {
    const taken = new Set<string>(); // agent names in the database so far
    for (const fx of fixtures()) {
      it(`${fx.file}`, async () => {
        const doc = toV2(await readAgentFile(fx.path));
        // Fixtures of one agent share names (customer_service, memgpt_agent, deep_research_agent):
        // into one database the later ones go with --on-conflict=copy and must get Letta's
        // "<name>_copy" names; the others with no flags.
        const clash = doc.agents.some((a) => taken.has(String(a.name)));
        const toolsBefore = new Map((await letta.api<Obj[]>('GET', '/v1/tools/?limit=1000')).map((t) => [t.name, t]));
        const r = runCli(['restore', fx.path, '--db', letta.db.url, '--json', ...(clash ? ['--on-conflict=copy'] : [])]);
        const agents = new Map<string, string>();
        const names = new Map<string, string>();
        let plan: Obj | undefined;
        if (r.code === 0) {
          plan = JSON.parse(r.stdout).plan as Obj;
          for (const a of plan.agents as Obj[]) {
            if (!a.target_id) continue;
            agents.set(a.source_id, a.target_id);
            names.set(a.source_id, a.target_name);
          }
        }
        restored.set(fx.file, { code: r.code, stderr: r.stderr, doc, agents });
        assert.equal(r.code, 0, `agent-vault restore ${fx.file}${clash ? ' --on-conflict=copy' : ' (no flags)'} exits 0; got ${r.code}: ${r.stderr.trim()}`);
        assert.equal(agents.size, doc.agents.length, 'every agent of the file restored');
        for (const a of doc.agents) {
          const got = names.get(String(a.id))!;
          if (taken.has(String(a.name))) assert.match(got, new RegExp(`^${escapeRe(String(a.name))}_copy\\d*$`), `${a.name}: a copy is named <name>_copy…`);
          else assert.equal(got, a.name, `${a.name}: restored under its own name`);
          taken.add(got);
        }
        // --tools keep (default): a tool of the same name already in the database is kept as it
        // is, as Letta's import does with override_existing_tools=false; a new one is the file's.
        const toolAction = new Map((plan!.tools as Obj[]).map((t) => [t.name, t.action as string]));
        for (const [name, action] of toolAction) {
          if (action === 'keep') assert.ok(toolsBefore.has(name), `${fx.file}: tool ${name} kept: it existed before the restore`);
          else assert.ok(!toolsBefore.has(name), `${fx.file}: tool ${name} created: it did not exist`);
        }
        const addsSystem = new Set((plan!.agents as Obj[]).filter((p) => p.adds_system_message).map((p) => String(p.source_id)));
        await checkAgentsThroughRest(letta, fx, doc, agents, names, (name) => (toolAction.get(name) === 'keep' ? toolsBefore.get(name) : undefined), addsSystem);
        assert.deepEqual(letta.serverErrors(), [], 'no server error in Letta’s log');
      });
    }
  });

  describe('3. restore → run: restored agents answer, edit memory, use archival memory', () => {
    const RUN = ['loop.v2.af', 'lettabot.v2.af', 'ezra.v2.af', 'lettabot-builder.v2.af', 'void.v2.af', 'letta-test-basic-blocks-tools-messages.v2.af', 'memgpt-agent.v1.af'];
    for (const file of RUN) {
      it(`${file}: message → reply, memory edit persists, archival insert + search${file.startsWith('lettabot-builder') ? ', sleeptime group turn advances' : ''}`, async () => {
        const rs = restored.get(file);
        assert.ok(rs, `${file} was restored in part 2`);
        assert.equal(rs.code, 0, `restore of ${file} failed in part 2: ${rs.stderr.trim()}`);
        const logFrom = letta.log().length;
        const outFrom = letta.outbound.length;
        const docAgent = rs.doc.agents.find((a) => a.agent_type !== 'sleeptime_agent') ?? rs.doc.agents[0];
        const agentId = rs.agents.get(String(docAgent.id))!;
        for (const id of rs.agents.values()) await useStubModels(letta, id);
        const before = await letta.api<Obj>('GET', `/v1/agents/${agentId}`);
        let toolNames = new Set<string>((before.tools ?? []).map((t: Obj) => t.name));
        if (!toolNames.has('core_memory_append') && !toolNames.has('memory_insert')) {
          // No memory-edit tool of the classic kind: attach Letta's own memory_insert (a user action).
          const [tool] = await letta.api<Obj[]>('GET', '/v1/tools/?name=memory_insert');
          assert.ok(tool, 'Letta has its built-in memory_insert tool');
          await letta.api('PATCH', `/v1/agents/${agentId}/tools/attach/${tool.id}`);
          toolNames = new Set([...toolNames, 'memory_insert']);
        }
        const block = (before.memory?.blocks ?? []).find((b: Obj) => !b.read_only && b.label !== 'skills');
        const marker = `vault-run-${file.replace(/\W/g, '-')}`;
        const directives: string[] = [];
        let expectEdit: string | undefined;
        if (block) {
          if (toolNames.has('core_memory_append')) directives.push(`[[tool core_memory_append {"label": "${block.label}", "content": "${marker}"}]]`);
          else directives.push(`[[tool memory_insert {"label": "${block.label}", "new_string": "${marker}", "insert_line": -1}]]`);
          expectEdit = block.label;
        }
        // Archival memory: a passage written through Letta's REST API (embedded by the stub), then
        // searched by the agent's own archival_memory_search tool when it has one (the REST insert
        // is the passage_manager.insert_passage the archival_memory_insert tool calls).
        const archivalText = `The vault test passage for ${file} mentions the blue heron ${marker}`;
        await letta.api('POST', `/v1/agents/${agentId}/archival-memory`, { text: archivalText });
        const searchByTool = toolNames.has('archival_memory_search');
        if (searchByTool) directives.push(`[[tool archival_memory_search {"query": "${archivalText}"}]]`);

        const group = before.multi_agent_group as Obj | null;
        if (group && !before.enable_sleeptime) {
          // lettabot-builder.v2.af has its sleeptime group with enable_sleeptime false (Letta then
          // runs the agent alone, for its own import too): switch it on as a user does in Letta
          // (PATCH enable_sleeptime; Letta keeps the existing group)
          const on = await letta.api<Obj>('PATCH', `/v1/agents/${agentId}`, { enable_sleeptime: true });
          assert.equal(on.multi_agent_group?.id, group.id, 'Letta keeps the restored group when sleeptime is switched on');
        }
        const groupBefore = group ? await letta.api<Obj>('GET', `/v1/groups/${group.id}`) : undefined;

        const resp = await sendMessage(letta, agentId, `Hello from the restore test. ${directives.join(' ')}`).catch((e: Error) => {
          throw new Error(`${e.message}\nLetta's log: ${letta.serverErrors(logFrom).join('\n')}`);
        });
        assert.match(replyText(resp), /stub reply/, `a reply arrives: ${JSON.stringify(resp).slice(0, 1500)}`);
        const calledTools = (resp.messages ?? []).filter((m: Obj) => m.message_type === 'tool_call_message').map((m: Obj) => m.tool_call.name);
        const returns = (resp.messages ?? []).filter((m: Obj) => m.message_type === 'tool_return_message');
        for (const ret of returns) assert.notEqual(ret.status, 'error', `tool ${ret.name ?? ''} returned an error: ${JSON.stringify(ret).slice(0, 800)}`);

        if (expectEdit) {
          const afterBlocks = await letta.api<Obj[]>('GET', `/v1/agents/${agentId}/core-memory/blocks`);
          const after = afterBlocks.find((b) => b.label === expectEdit)!;
          assert.match(after.value, new RegExp(marker), `the memory edit (${calledTools.join(', ')}) persisted in block "${expectEdit}"`);
        } else {
          assert.fail(`${file}: the agent has no writable block`);
        }

        const passages = await letta.api<Obj[]>('GET', `/v1/agents/${agentId}/archival-memory?limit=100`);
        assert.ok(
          passages.some((p) => String(p.text).includes(marker)),
          'the inserted passage is listed',
        );
        const found = await letta.api<Obj>('GET', `/v1/agents/${agentId}/archival-memory/search?query=${encodeURIComponent(archivalText)}&top_k=3`);
        const results: Obj[] = Array.isArray(found) ? found : (found.results ?? []);
        assert.ok(results.length > 0 && String(results[0].content ?? results[0].text).includes(marker), `archival search finds the passage first: ${JSON.stringify(found).slice(0, 600)}`);
        if (searchByTool) {
          const ret = returns.find((m: Obj) => m.name === 'archival_memory_search');
          assert.ok(ret, `the agent called archival_memory_search (${calledTools.join(', ')})`);
          assert.match(String(ret.tool_return), new RegExp(marker), 'archival_memory_search returns the passage');
        }

        if (group) {
          const g = await waitFor('the sleeptime group to advance', async () => {
            const now = await letta.api<Obj>('GET', `/v1/groups/${group.id}`);
            return now.turns_counter !== groupBefore!.turns_counter || now.last_processed_message_id !== groupBefore!.last_processed_message_id ? now : undefined;
          }).catch((e: Error) => {
            throw new Error(`${e.message} (turns_counter before: ${groupBefore!.turns_counter}); Letta's log: ${letta.serverErrors(logFrom).join('\n')}`);
          });
          assert.ok(g, 'group state advanced');
          await waitFor('the sleeptime agent to be called', async () => ((await stub.calls()).some((c) => c.tools.includes('memory_finish_edits')) ? true : undefined), 60_000);
        }
        assert.deepEqual(letta.serverErrors(logFrom), [], 'no server error in Letta’s log');
        assert.deepEqual(letta.outbound.slice(outFrom), [], 'no outbound request');
      });
    }
  });
});

/** Compares what Letta's REST API returns for the restored agents with the file. */
async function checkAgentsThroughRest(
  letta: LettaServer,
  fx: FixtureInfo,
  doc: AgentFileV2,
  ids: Map<string, string>,
  names: Map<string, string>,
  keptTool: (name: string) => Obj | undefined,
  addsSystem: Set<string>,
): Promise<void> {
  const blocks = new Map((doc.blocks ?? []).map((b) => [String(b.id), b as Obj]));
  const tools = new Map((doc.tools ?? []).map((t) => [String(t.id), t as Obj]));
  const msgOrder = new Map<string, number>();
  for (const a of doc.agents) {
    const where = `${fx.file} ${a.id} (${a.name})`;
    const id = ids.get(String(a.id));
    assert.ok(id, `${where}: restored`);
    const got = await letta.api<Obj>('GET', `/v1/agents/${id}`);
    assert.equal(got.name, names.get(String(a.id)), `${where}: name`);
    assert.equal(got.system, a.system, `${where}: system prompt`);
    assert.equal(got.agent_type, a.agent_type, `${where}: agent_type`);
    // blocks: label, value, limit, read-only
    const want = ((a.block_ids as string[] | undefined) ?? []).map((b) => blocks.get(b)!).filter(Boolean);
    const gotBlocks = await letta.api<Obj[]>('GET', `/v1/agents/${id}/core-memory/blocks`);
    const norm = (b: Obj) => ({ label: b.label, value: b.value, limit: b.limit ?? null, read_only: b.read_only ?? false });
    const sortL = (xs: Obj[]) => [...xs].sort((x, y) => String(x.label).localeCompare(String(y.label)));
    assert.deepEqual(sortL(gotBlocks.map(norm)), sortL(want.map(norm)), `${where}: blocks`);
    // tools: names; source and JSON schema of the file's tools (Letta's built-in tools of the same
    // name are kept as the server defines them: restore --tools keep)
    const wantTools = ((a.tool_ids as string[] | undefined) ?? []).map((t) => tools.get(t)!).filter(Boolean);
    const gotTools = got.tools as Obj[];
    assert.deepEqual(gotTools.map((t) => t.name).sort(), wantTools.map((t) => t.name).sort(), `${where}: tool names`);
    for (const t of wantTools) {
      if (String(t.tool_type ?? '').startsWith('letta_')) continue;
      const g = gotTools.find((x) => x.name === t.name)!;
      // a kept tool is the one that was in the database (its id too); a created one is the file's
      const w = keptTool(String(t.name)) ?? t;
      if (w !== t) assert.equal(g.id, w.id, `${where}: tool ${t.name} is the existing tool`);
      assert.equal(g.source_code ?? null, w.source_code ?? null, `${where}: tool ${t.name} source`);
      assert.deepEqual(g.json_schema, w.json_schema, `${where}: tool ${t.name} JSON schema`);
    }
    // tool rules
    const rules = (xs: Obj[] | undefined) =>
      (xs ?? []).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null && v !== undefined))).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    assert.deepEqual(rules(got.tool_rules), rules(a.tool_rules as Obj[]), `${where}: tool rules`);
    assert.deepEqual([...(got.tags ?? [])].sort(), [...((a.tags as string[]) ?? [])].sort(), `${where}: tags`);
    // LLM and embedding config: every field the file sets, as Letta's own models validate the
    // file's value (Letta applies its model rules when it reads a config, e.g.
    // put_inner_thoughts_in_kwargs = false for claude-3-7-sonnet; docs/RESTORE.md)
    const view = lettaViews.get(fx.file)!;
    for (const [key, conf] of [
      ['llm_config', a.llm_config],
      ['embedding_config', a.embedding_config],
    ] as const) {
      const shown = (key === 'llm_config' ? view.llm_configs : view.embedding_configs)[doc.agents.indexOf(a)];
      for (const [k, v] of Object.entries((conf as Obj) ?? {})) {
        if (v === null || v === undefined) continue;
        assert.deepEqual(got[key]?.[k], shown[k], `${where}: ${key}.${k} (file: ${JSON.stringify(v)}, Letta's model: ${JSON.stringify(shown[k])})`);
      }
    }
    // messages in order, and the in-context window
    const fileMsgs = (a.messages as Obj[] | undefined) ?? [];
    fileMsgs.forEach((m, i) => msgOrder.set(String(m.id), i));
    const stored = storedMessages(await listMessages(letta, id!));
    if (addsSystem.has(String(a.id))) {
      // the file gives the agent no in-context message: the restore wrote the system message
      // Letta's create_agent writes (the compiled system prompt), its only in-context message
      assert.deepEqual(fileMsgs.length, 0, `${where}: the file has no messages`);
      assert.deepEqual(
        stored.map((m) => m.role),
        ['system'],
        `${where}: Letta lists the initial system message`,
      );
      assert.ok(stored[0].text.startsWith(String(a.system ?? '')) && /<memory_metadata>/.test(stored[0].text), `${where}: it holds the compiled system prompt: ${stored[0].text.slice(0, 300)}`);
      assert.deepEqual(got.message_ids, [stored[0].id], `${where}: it is the only in-context message`);
    } else {
      assert.deepEqual(
        stored.map((m) => m.role),
        fileMsgs.map((m) => String(m.role)),
        `${where}: message roles in order (${stored.length} listed, ${fileMsgs.length} in the file)`,
      );
      // user texts as Letta lists them: a packed {"type": "user_message", "message": …} shows its message
      const userTexts = (xs: { role: string; text: string }[]) => xs.filter((m) => m.role === 'user').map((m) => m.text);
      assert.deepEqual(userTexts(stored), view.user_texts[doc.agents.indexOf(a)], `${where}: user message texts`);
      const inCtx = ((a.in_context_message_ids as string[] | undefined) ?? []).map((m) => msgOrder.get(m));
      const storedIdx = new Map(stored.map((m, i) => [m.id, i]));
      assert.deepEqual(
        (got.message_ids as string[]).map((m) => storedIdx.get(m)),
        inCtx,
        `${where}: in-context messages (positions)`,
      );
    }
    // archival passages: an .af carries none; the agent's archive through Letta lists what was restored
    const passages = await letta.api<Obj[]>('GET', `/v1/agents/${id}/archival-memory?limit=1000`);
    assert.equal(passages.length, 0, `${where}: archival passages`);
    // groups
    const gIds = ((a.group_ids as string[] | undefined) ?? []).filter((g) => (doc.groups ?? []).some((x) => x.id === g));
    if (gIds.length) {
      const gf = doc.groups!.find((x) => x.id === gIds[0]) as Obj;
      const g: Obj = { ...gf, ...(gf.manager_config ?? {}) };
      assert.ok(got.multi_agent_group, `${where}: Letta reports its group`);
      const lg = await letta.api<Obj>('GET', `/v1/groups/${got.multi_agent_group.id}`);
      assert.equal(lg.manager_type, g.manager_type, `${where}: group manager_type`);
      assert.equal(lg.manager_agent_id, ids.get(String(g.manager_agent_id)), `${where}: group manager`);
      assert.deepEqual([...lg.agent_ids].sort(), (g.agent_ids as string[]).map((x) => ids.get(x)).sort(), `${where}: group members`);
      if (g.sleeptime_agent_frequency != null) assert.equal(lg.sleeptime_agent_frequency, g.sleeptime_agent_frequency, `${where}: sleeptime frequency`);
      if (lg.manager_type === 'sleeptime') assert.notEqual(lg.turns_counter, null, `${where}: a sleeptime group has a turns_counter (Letta sets -1 / 0)`);
    }
  }
}

function escapeRe(x: string): string {
  return x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The text of a file message as Letta stores it (one text part: its text; several: joined). */
function fileText(m: Obj): string {
  return typeof m.content === 'string' ? m.content : Array.isArray(m.content) ? m.content.map((p: Obj) => p?.text ?? '').join('') : String(m.text ?? '');
}

/** Per fixture: the llm/embedding configs and user texts of its agents as Letta's own code shows them. */
const lettaViews = new Map<string, { llm_configs: Obj[]; embedding_configs: Obj[]; user_texts: string[][] }>();
async function computeLettaViews(): Promise<void> {
  const all: { file: string; doc: AgentFileV2 }[] = [];
  for (const fx of fixtures()) all.push({ file: fx.file, doc: toV2(await readAgentFile(fx.path)) });
  const agents = all.flatMap(({ file, doc }) => doc.agents.map((a) => ({ file, a: a as Obj })));
  const texts = agents.map(({ a }) => ((a.messages as Obj[] | undefined) ?? []).filter((m) => m.role === 'user').map(fileText));
  const v = lettaView({
    llm_configs: agents.map(({ a }) => stripNulls(a.llm_config)),
    embedding_configs: agents.map(({ a }) => stripNulls(a.embedding_config)),
    user_texts: texts.flat(),
  });
  let t = 0;
  agents.forEach(({ file }, i) => {
    const e = lettaViews.get(file) ?? { llm_configs: [], embedding_configs: [], user_texts: [] };
    e.llm_configs.push(v.llm_configs[i]);
    e.embedding_configs.push(v.embedding_configs[i]);
    e.user_texts.push(v.user_texts.slice(t, t + texts[i].length));
    t += texts[i].length;
    lettaViews.set(file, e);
  });
}

function stripNulls(o: unknown): Obj {
  return Object.fromEntries(Object.entries((o as Obj) ?? {}).filter(([, x]) => x !== null && x !== undefined));
}
