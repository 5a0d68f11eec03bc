/**
 * bench/validate: generate a ~100 MB .af v2 file and validate it in a fresh process, reporting
 * wall time and peak RSS. Targets (issue 2): under 3 s and peak RSS under 4x the file size.
 *
 *   npx tsx bench/validate.ts [--mb 100] [--keep]
 *
 * The measurement runs in a child process so the generator's memory does not count.
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';

const args = process.argv.slice(2);

async function generate(file: string, targetBytes: number): Promise<number> {
  const out = createWriteStream(file);
  const w = async (s: string) => {
    if (!out.write(s)) await once(out, 'drain');
  };
  const agents = 4;
  const perAgentBytes = targetBytes / agents;
  let msgId = 0;
  await w('{"agents":[');
  for (let a = 0; a < agents; a++) {
    await w(
      `${a ? ',' : ''}{"id":"agent-${a}","name":"bench-${a}","agent_type":"letta_v1_agent","system":"You are a benchmark agent.","tool_ids":["tool-0"],"block_ids":["block-${a}"],"tool_rules":[{"tool_name":"send_message","type":"exit_loop"}],"llm_config":{"model":"gpt-4.1-mini","model_endpoint_type":"openai","context_window":128000},"embedding_config":{"embedding_model":"text-embedding-3-small","embedding_endpoint_type":"openai","embedding_dim":1536},"messages":[`,
    );
    let written = 0;
    const inContext: string[] = [];
    let first = true;
    for (let i = 0; written < perAgentBytes; i++) {
      const id = `message-${msgId++}`;
      let m: string;
      if (i % 3 === 1) {
        const callId = `call_${a}_${i}`;
        m = `{"id":"${id}","role":"assistant","agent_id":"agent-${a}","model":"gpt-4.1-mini","content":[{"type":"text","text":"Thinking about step ${i} of the plan, with some detail to make the message realistic."}],"tool_calls":[{"id":"${callId}","type":"function","function":{"name":"send_message","arguments":"{\\"message\\": \\"Reply number ${i}\\"}"}}],"created_at":"2026-01-01T00:00:00Z"}`;
        const rid = `message-${msgId++}`;
        m += `,{"id":"${rid}","role":"tool","agent_id":"agent-${a}","tool_call_id":"${callId}","content":[{"type":"text","text":"{\\"status\\": \\"OK\\", \\"message\\": \\"None\\"}"}],"tool_returns":[{"tool_call_id":"${callId}","status":"success","func_response":"OK"}],"created_at":"2026-01-01T00:00:01Z"}`;
        if (inContext.length < 2000) inContext.push(id, rid);
        i++;
      } else {
        m = `{"id":"${id}","role":"user","agent_id":"agent-${a}","content":[{"type":"text","text":"User message ${i}: ${'lorem ipsum dolor sit amet '.repeat(8)}"}],"created_at":"2026-01-01T00:00:00Z"}`;
        if (inContext.length < 2000) inContext.push(id);
      }
      await w((first ? '' : ',') + m);
      first = false;
      written += m.length;
    }
    await w(`],"in_context_message_ids":${JSON.stringify(inContext)}}`);
  }
  await w('],"groups":[],"blocks":[');
  for (let a = 0; a < agents; a++) await w(`${a ? ',' : ''}{"id":"block-${a}","label":"persona","value":"I am bench agent ${a}.","limit":5000}`);
  await w(
    '],"files":[],"sources":[],"tools":[{"id":"tool-0","name":"send_message","tool_type":"letta_core","source_type":"python","source_code":"def send_message(message: str):\\n    return None","json_schema":{"name":"send_message","parameters":{"type":"object","properties":{"message":{"type":"string"}}}}}],"mcp_servers":[],"metadata":{"revision_id":"1c28e167b74f"},"created_at":"2026-01-01T00:00:00Z"}',
  );
  out.end();
  await once(out, 'finish');
  return statSync(file).size;
}

const CHILD = `
const { validateAgentFilePath } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'format', 'validate.ts'))});
(async () => {
  const t0 = process.hrtime.bigint();
  const r = await validateAgentFilePath(process.argv[1]);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  process.stdout.write(JSON.stringify({ ms, valid: r.valid, errors: r.errors.length, maxRssKiB: process.resourceUsage().maxRSS, counts: r.counts }));
})();
`;

async function main() {
  const mbIdx = args.indexOf('--mb');
  const mb = mbIdx >= 0 ? Number(args[mbIdx + 1]) : 100;
  const dir = mkdtempSync(path.join(tmpdir(), 'av-bench-validate-'));
  const file = path.join(dir, 'bench.af');
  try {
    const size = await generate(file, mb * 1024 * 1024);
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', CHILD, file], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new Error(r.stderr);
      runs.push(JSON.parse(r.stdout));
    }
    const best = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
    const rss = Math.max(...runs.map((r) => r.maxRssKiB)) * 1024;
    // Baseline: the same process that only loads the code, so its own footprint is known.
    const base = spawnSync(
      process.execPath,
      ['--require', 'tsx/cjs', '-e', `require(${JSON.stringify(path.join(__dirname, '..', 'src', 'format', 'validate.ts'))}); process.stdout.write(String(process.resourceUsage().maxRSS))`],
      { encoding: 'utf8' },
    );
    const baseRss = Number(base.stdout) * 1024;
    const sizeMB = size / 1048576;
    console.log(`bench/validate: file ${sizeMB.toFixed(1)} MB, ${best.counts.messages} messages, valid=${best.valid} (${best.errors} errors)`);
    console.log(`  time: best ${(best.ms / 1000).toFixed(2)} s of ${runs.length} (${runs.map((r) => (r.ms / 1000).toFixed(2)).join(', ')})`);
    console.log(`  peak RSS: ${(rss / 1048576).toFixed(0)} MB = ${(rss / size).toFixed(2)}x the file (process baseline ${(baseRss / 1048576).toFixed(0)} MB)`);
    const okTime = best.ms < 3000;
    const okRss = rss < 4 * size;
    console.log(`  target time < 3 s: ${okTime ? 'PASS' : 'FAIL'}; target peak RSS < 4x file: ${okRss ? 'PASS' : 'FAIL'}`);
    if (!best.valid) throw new Error('the generated file should be valid');
    process.exitCode = okTime && okRss ? 0 : 1;
  } finally {
    if (!args.includes('--keep')) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
