/**
 * `agent-vault demo`: the main job end to end on the embedded default (PGlite, no server):
 * a Letta database seeded with real agent files, an export to a snapshot, a restore into a
 * second embedded database, and a semantic comparison proving both agree.
 */
import { promises as fs, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { AgentVaultError } from '../core/errors';
import { openPglite } from '../db/pglite';
import type { Db } from '../db/types';
import { createLettaSchema, LETTA_HEAD_REVISION } from '../letta/ddl';
import { seedAgentFile } from '../letta/seed';
import { exportAgents, listAgents } from '../letta/export';
import { restoreAgents } from '../letta/restore';
import { diffPaths } from '../diff';
import { readManifest } from '../format/archive';
import type { CliContext } from './context';

export interface DemoOptions {
  /** .af files to seed (default: every .af in the fixtures folder) */
  files: string[];
  /** archival passages per agent (synthetic, with real vectors) */
  passages: number;
  dim: number;
  /** where to keep the snapshots (default: a temp dir, removed at the end) */
  outDir?: string;
  log: (line: string) => void;
}

export interface DemoResult {
  agents: number;
  messages: number;
  passages: number;
  snapshot: string;
  restoredSnapshot: string;
  equal: boolean;
  differences: string[];
}

const ms = (t0: bigint) => `${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2)} s`;

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log;
  const dir = o.outDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'agent-vault-demo-')));
  await fs.mkdir(dir, { recursive: true });
  const snapA = path.join(dir, 'source.avsnap');
  const snapB = path.join(dir, 'restored.avsnap');
  let source: Db | undefined;
  let target: Db | undefined;
  try {
    log(`Agent Vault demo — embedded PostgreSQL (PGlite + pgvector), Letta schema at alembic ${LETTA_HEAD_REVISION}`);
    let t = process.hrtime.bigint();
    source = await openPglite({});
    await createLettaSchema(source);
    log(`1. created the source Letta database (${ms(t)})`);

    t = process.hrtime.bigint();
    let seeded = 0;
    for (const f of o.files) {
      const r = await seedAgentFile(source, f, { tools: 'keep', passages: o.passages > 0 ? { count: o.passages, dim: o.dim, seed: seeded + 1 } : undefined });
      seeded += r.agents.length;
    }
    const listed = await listAgents(source);
    const messages = listed.reduce((a, x) => a + x.messages, 0);
    const passages = listed.reduce((a, x) => a + x.passages, 0);
    log(`2. seeded ${o.files.length} agent files as Letta's import lays them out: ${listed.length} agents, ${messages} messages, ${passages} archival passages (${o.dim}-dim vectors) (${ms(t)})`);

    t = process.hrtime.bigint();
    const exp = await exportAgents(source, { select: { all: true }, out: snapA });
    log(`3. exported all agents in one REPEATABLE READ transaction to ${snapA} (${(exp.bytes / 1024).toFixed(0)} KiB, ${exp.manifest.entries.length} checksummed entries) (${ms(t)})`);

    t = process.hrtime.bigint();
    target = await openPglite({});
    await createLettaSchema(target);
    const plan = await restoreAgents(target, snapA, { dryRun: true });
    log(`4. dry run against an empty second database: ${plan.plan.summary.created.length} to create, ${plan.plan.refusals.length} refusals`);
    const res = await restoreAgents(target, snapA, { onConflict: 'fail', tools: 'keep' });
    const rows = Object.values(res.rows).reduce((a, n) => a + (n ?? 0), 0);
    log(`5. restored the snapshot into it in one transaction: ${Object.keys(res.agentIds).length} agents, ${rows} rows (${ms(t)})`);

    t = process.hrtime.bigint();
    await exportAgents(target, { select: { all: true }, out: snapB });
    const report = await diffPaths(snapA, snapB);
    const differing = report.agents.filter((a) => a.status !== 'unchanged');
    const mA = await readManifest(snapA);
    const mB = await readManifest(snapB);
    const vectorsA = mA.agents.reduce((a, x) => a + x.counts.passages, 0);
    const vectorsB = mB.agents.reduce((a, x) => a + x.counts.passages, 0);
    const equal = differing.length === 0 && report.agents.length === listed.length && vectorsA === vectorsB;
    log(
      `6. exported the restored database and diffed the two snapshots semantically (${ms(t)}): ` +
        (equal
          ? `all ${report.agents.length} agents equal — system prompts, memory blocks, tools, tool rules, groups, models, ${messages} messages in order with their in-context ids, ${vectorsB} passages with identical vectors`
          : `${differing.length} agent(s) differ: ${differing.map((d) => d.key).join(', ')}`),
    );
    log(equal ? 'OK: the restored agents are the agents that were backed up.' : 'FAILED: the restore did not reproduce the source.');
    if (o.outDir) log(`snapshots kept in ${dir}; try: agent-vault inspect ${snapA}`);
    return {
      agents: listed.length,
      messages,
      passages,
      snapshot: snapA,
      restoredSnapshot: snapB,
      equal,
      differences: differing.map((d) => d.key),
    };
  } finally {
    await source?.close().catch(() => undefined);
    await target?.close().catch(() => undefined);
    if (!o.outDir) await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The fixtures folder beside the repository (../shared/fixtures/af), if there is one. */
export function defaultFixturesDir(cwd: string = process.cwd()): string | undefined {
  const candidates = [
    path.resolve(cwd, '..', 'shared', 'fixtures', 'af'),
    path.resolve(__dirname, '..', '..', 'shared', 'fixtures', 'af'),
    path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures', 'af'),
  ];
  return candidates.find((c) => existsSync(c));
}

export function registerDemoCommand(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('Run the main job on the embedded default (PGlite): seed Letta agents from .af files, export a snapshot, restore it into a second database and prove both agree')
    .argument('[files...]', '.af files to seed (default: every .af in ../shared/fixtures/af)')
    .option('--passages <n>', 'synthetic archival passages per agent', '20')
    .option('--dim <n>', 'embedding dimension of the synthetic passages', '1536')
    .option('--keep <dir>', 'keep the two snapshots in this folder')
    .action(async (files: string[], opts: { passages: string; dim: string; keep?: string }) => {
      let list = files;
      if (!list.length) {
        const dir = defaultFixturesDir(ctx.cwd);
        if (!dir) throw new AgentVaultError('usage', 'no .af files given and no ../shared/fixtures/af folder found', { kind: 'usage', hint: 'pass agent files: agent-vault demo a.af b.af' });
        list = (await fs.readdir(dir))
          .filter((f) => f.endsWith('.af'))
          .sort()
          .map((f) => path.join(dir, f));
      }
      const r = await runDemo({ files: list, passages: Number(opts.passages), dim: Number(opts.dim), outDir: opts.keep, log: (l) => ctx.stdout(l + '\n') });
      ctx.exitCode = r.equal ? 0 : 1;
    });
}
