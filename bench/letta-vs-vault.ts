/**
 * bench/letta-vs-vault: moving one agent from one Letta database to another, Letta's own way
 * (REST GET /v1/agents/{id}/export, then POST /v1/agents/import on the target server) against
 * Agent Vault's (`agent-vault export` + `agent-vault restore`, the built CLI), measured in the same
 * run against the real Letta 0.16.8 server (scripts/provision-letta.sh) on the same PostgreSQL.
 *
 *   node scripts/build.mjs && npx tsx bench/letta-vs-vault.ts            # 10k and 50k messages, 5k passages
 *   npx tsx bench/letta-vs-vault.ts --messages 2000,5000 --passages 500  # other sizes
 *
 * The source agent is written into a database built by Letta's own migrations with the project's
 * synthetic generator (src/letta/synth.ts; 1536-dim embeddings, model text-embedding-3-small), then
 * read back through Letta's REST API before anything is timed, so both tools start from data Letta
 * itself serves. Completeness = rows of the moved agent in the target database (messages,
 * archival passages) / rows of the source agent. Target (issue 11): ours ≥ 10x faster, 100% complete.
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

async function counts(url: string, agentId: string): Promise<{ messages: number; passages: number }> {
  const db = await openPg({ url });
  try {
    const m = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM messages WHERE agent_id = $1 AND NOT is_deleted', [agentId]);
    const p = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM archival_passages p JOIN archives_agents aa ON aa.archive_id = p.archive_id WHERE aa.agent_id = $1 AND NOT p.is_deleted', [
      agentId,
    ]);
    return { messages: m.rows[0].n, passages: p.rows[0].n };
  } finally {
    await db.close();
  }
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
}

async function main(): Promise<void> {
  const messageSizes = listArg('messages', [10_000, 50_000]);
  const [passages] = listArg('passages', [5_000]);
  const work = mkdtempSync(path.join(tmpdir(), 'av-bench-letta-'));
  const stub = await startOpenAiStub();
  let src: LettaServer | undefined;
  let dst: LettaServer | undefined;
  const rows: Row[] = [];
  try {
    src = await startLettaServer({ stub });
    dst = await startLettaServer({ stub });
    for (const [i, n] of messageSizes.entries()) {
      const db = await openPg({ url: src.db.url });
      let agentId: string;
      try {
        const r = await generateSyntheticDb(db, { agents: 1, messagesPerAgent: n, passagesPerAgent: passages, dim: 1536, seed: 11 + i, embeddingModel: 'text-embedding-3-small' });
        agentId = r.agentIds[0];
      } finally {
        await db.close();
      }
      const want = await counts(src.db.url, agentId);
      await src.api('GET', `/v1/agents/${agentId}`); // Letta serves the agent
      const size = `${n.toLocaleString('en')} msgs + ${passages.toLocaleString('en')} passages`;

      // Letta: REST export, then REST import into the target server.
      let t0 = performance.now();
      const exp = await src.request('GET', `/v1/agents/${agentId}/export`);
      if (!exp.ok) throw new Error(`Letta export: HTTP ${exp.status} ${(await exp.text()).slice(0, 1000)}`);
      const af = Buffer.from(await exp.arrayBuffer());
      const tExp = (performance.now() - t0) / 1000;
      const afFile = path.join(work, `letta-${n}.af`);
      writeFileSync(afFile, af);
      t0 = performance.now();
      const form = new FormData();
      form.append('file', new Blob([af], { type: 'application/json' }), `letta-${n}.af`);
      const imp = await dst.request('POST', '/v1/agents/import', form);
      const impBody = await imp.text();
      if (!imp.ok) throw new Error(`Letta import: HTTP ${imp.status} ${impBody.slice(0, 1000)}`);
      const tImp = (performance.now() - t0) / 1000;
      const importedId = (JSON.parse(impBody) as { agent_ids: string[] }).agent_ids[0];
      const gotL = await counts(dst.db.url, importedId);
      rows.push({
        size,
        tool: 'Letta REST export + import',
        export: tExp,
        import: tImp,
        total: tExp + tImp,
        fileMB: af.length / 1048576,
        messages: `${gotL.messages}/${want.messages}`,
        passages: `${gotL.passages}/${want.passages}`,
      });

      // Agent Vault: export, then restore into the target server's database.
      const snap = path.join(work, `vault-${n}.avsnap`);
      const tVExp = cli(['export', '--db', src.db.url, '--agent', agentId, '--out', snap, '--force', '-q']);
      const tVRes = cli(['restore', snap, '--db', dst.db.url, '-q']);
      const gotV = await counts(dst.db.url, agentId);
      rows.push({
        size,
        tool: 'agent-vault export + restore',
        export: tVExp,
        import: tVRes,
        total: tVExp + tVRes,
        fileMB: statSync(snap).size / 1048576,
        messages: `${gotV.messages}/${want.messages}`,
        passages: `${gotV.passages}/${want.passages}`,
      });
      await dst.api('GET', `/v1/agents/${agentId}`); // Letta serves the restored agent
      const errs = [...src.serverErrors(), ...dst.serverErrors()];
      if (errs.length) console.error(`Letta logged errors:\n${errs.join('\n')}`);
    }
  } finally {
    await dst?.stop();
    await src?.stop();
    await stub.close();
    await stopSharedTestPostgres();
    rmSync(work, { recursive: true, force: true });
  }
  console.log('| data | way | export s | import/restore s | total s | file MB | messages kept | passages kept |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.size} | ${r.tool} | ${r.export.toFixed(2)} | ${r.import.toFixed(2)} | ${r.total.toFixed(2)} | ${r.fileMB.toFixed(1)} | ${r.messages} | ${r.passages} |`);
  }
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const [l, v] = [rows[i], rows[i + 1]];
    const speed = l.total / v.total;
    console.log(
      `${l.size}: ${speed >= 1 ? `agent-vault ${speed.toFixed(1)}x faster` : `agent-vault takes ${(1 / speed).toFixed(1)}x Letta's time`}; ` +
        `kept messages ${v.messages} (Letta ${l.messages}), passages ${v.passages} (Letta ${l.passages})`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
