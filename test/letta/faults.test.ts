/**
 * Faults during a restore leave the target exactly as it was (row count and content checksum of
 * every table in the letta schema compared before and after): the backend killed mid-restore
 * with pg_terminate_backend from another connection, a constraint violation in the last table
 * written, a corrupt archive entry (refused before any transaction opens). Real PostgreSQL.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { AgentVaultError } from '../../src/core/errors';
import type { Db } from '../../src/db/types';
import { openArchive } from '../../src/format/archive';
import { exportAgents } from '../../src/letta/export';
import { RESTORE_STEPS, restoreAgents, type RestoreStep } from '../../src/letta/restore';
import { seedAgentFile } from '../../src/letta/seed';
import { generateSyntheticDb } from '../../src/letta/synth';
import { sharedTestPostgres } from '../helpers/global-pg';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR } from '../helpers/paths';
import { corruptEntry, tableSnapshot } from './support';

describe('letta restore faults leave the target unchanged (PostgreSQL)', function () {
  this.timeout(60000);
  let dir: string;
  let archive: string;
  let target: Db;
  let before0: Awaited<ReturnType<typeof tableSnapshot>>;
  let targetName: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-faults-'));
    const src = await freshLettaDb('pg');
    try {
      await generateSyntheticDb(src, { agents: 2, messagesPerAgent: 120, passagesPerAgent: 30, dim: 16, seed: 5 });
      await seedAgentFile(src, path.join(FIXTURES_DIR, 'lettabot-builder.v2.af'), { passages: { count: 5 } });
      archive = path.join(dir, 'x.avs');
      await exportAgents(src, { select: { all: true }, out: archive });
    } finally {
      await src.close();
    }
    target = await freshLettaDb('pg');
    // the target is not empty (and its passages use another embedding model: allowed below)
    await seedAgentFile(target, path.join(FIXTURES_DIR, 'loop.v2.af'), { passages: { count: 4 } });
    targetName = (await target.query<{ d: string }>(`SELECT current_database() AS d`)).rows[0].d;
    before0 = await tableSnapshot(target);
  });
  after(async () => {
    await target?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const at of ['messages', 'archival_passages'] as RestoreStep[]) {
    it(`backend killed with pg_terminate_backend while paused before ${at}: rolled back, connection-lost error`, async () => {
      const server = await sharedTestPostgres();
      const steps: RestoreStep[] = [];
      let killed = 0;
      await assert.rejects(
        restoreAgents(target, archive, {
          allowEmbeddingMismatch: true,
          onStep: async (s) => {
            steps.push(s);
            if (s !== at) return;
            const admin = new Client({ connectionString: server.adminUrl });
            await admin.connect();
            try {
              const r = await admin.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'`, [targetName]);
              killed = r.rows.filter((x) => x.ok).length;
              // wait until the backend is gone
              for (let i = 0; i < 100; i++) {
                const left = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'`, [targetName]);
                if (left.rows[0].n === 0) break;
                await new Promise((res) => setTimeout(res, 20));
              }
            } finally {
              await admin.end();
            }
          },
        }),
        (e: unknown) => {
          assert.ok(e instanceof AgentVaultError && e.code === 'db-connection-lost', String(e));
          assert.match((e as Error).message, /not committed/);
          return true;
        },
      );
      assert.equal(killed, 1, 'the restoring backend was terminated');
      assert.ok(steps.includes('agents') && steps.includes(at), `stopped at ${at} after writing earlier tables: ${steps.join(',')}`);
      assert.deepEqual(await tableSnapshot(target), before0);
    });
  }

  it('a constraint violation in the last table written (passage_tags) rolls everything back (exit code 5)', async () => {
    await target.query(`ALTER TABLE passage_tags ADD CONSTRAINT av_test_fault CHECK (tag <> 'bucket-3') NOT VALID`); // only new rows
    try {
      const steps: RestoreStep[] = [];
      await assert.rejects(restoreAgents(target, archive, { allowEmbeddingMismatch: true, onStep: (s) => void steps.push(s) }), (e: unknown) => {
        assert.ok(e instanceof AgentVaultError && e.code === 'restore-write-failed' && e.kind === 'rolledBack', String(e));
        assert.match((e as Error).message, /"passage_tags".*av_test_fault.*rolled back/s);
        return true;
      });
      assert.equal(steps[steps.length - 1], 'passage_tags');
      assert.deepEqual(steps, [...RESTORE_STEPS], 'every table before it was written');
      assert.deepEqual(await tableSnapshot(target), before0);
    } finally {
      await target.query(`ALTER TABLE passage_tags DROP CONSTRAINT av_test_fault`);
    }
  });

  for (const kind of ['vectors', 'af'] as const) {
    it(`a corrupt archive entry (${kind}) is refused before any transaction opens (exit code 1)`, async () => {
      const r = await openArchive(archive);
      const a = r.manifest.agents.find((x) => x.vectors_entry)!;
      await r.close();
      const entry = kind === 'vectors' ? a.vectors_entry! : a.entry;
      const bad = path.join(dir, `bad-${kind}.avs`);
      writeFileSync(bad, corruptEntry(readFileSync(archive), entry));
      const steps: RestoreStep[] = [];
      await assert.rejects(restoreAgents(target, bad, { allowEmbeddingMismatch: true, onStep: (s) => void steps.push(s) }), (e: unknown) => {
        assert.ok(e instanceof AgentVaultError && e.code === 'checksum' && e.kind === 'failed', String(e));
        assert.ok((e as Error).message.includes(entry), 'names the entry');
        assert.match((e as Error).message, /nothing was restored/);
        return true;
      });
      assert.deepEqual(steps, []);
      assert.deepEqual(await tableSnapshot(target), before0);
    });
  }

  it('after all that, the same archive restores cleanly', async () => {
    const r = await restoreAgents(target, archive, { allowEmbeddingMismatch: true });
    assert.equal(r.plan.summary.created.length, 4);
    assert.equal(r.rows.archival_passages, 2 * 30 + 2 * 5);
  });
});
