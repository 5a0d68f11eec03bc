/**
 * An export is one consistent snapshot: while another connection keeps appending messages to an
 * agent (inserting the message and adding it to the agent's in-context ids, as Letta does), the
 * exported agent's every in-context id names an exported message. Real PostgreSQL (PGlite has a
 * single session, so nothing can write during its export).
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openPg } from '../../src/db/pg';
import { checkV2References } from '../../src/format/validate';
import { DEFAULT_ORG_ID } from '../../src/letta/ddl';
import { exportAgents } from '../../src/letta/export';
import { generateSyntheticDb } from '../../src/letta/synth';
import { freshLettaDb } from '../helpers/letta-db';
import { readArchiveAgents, urlOf } from './support';

describe('letta export while agents keep writing (PostgreSQL)', function () {
  this.timeout(60000);

  it('is a consistent snapshot: every in-context id present, nothing written after the snapshot', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'av-consistency-'));
    const db = await freshLettaDb('pg');
    const writer = await openPg({ url: await urlOf(db) });
    let stop = false;
    let committed = 0;
    try {
      const { agentIds } = await generateSyntheticDb(db, { agents: 2, messagesPerAgent: 400, passagesPerAgent: 5, dim: 8, seed: 21 });
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          const agent = agentIds[i % agentIds.length];
          await writer.transaction(async (tx) => {
            const id = `message-${randomUUID()}`;
            await tx.query(`INSERT INTO messages (id, agent_id, role, content, tool_calls, organization_id, created_at) VALUES ($1, $2, 'user', $3, '[]', $4, now())`, [
              id,
              agent,
              JSON.stringify([{ type: 'text', text: `live ${i}` }]),
              DEFAULT_ORG_ID,
            ]);
            await tx.query(`UPDATE agents SET message_ids = (message_ids::jsonb || to_jsonb($2::text))::json, updated_at = now() WHERE id = $1`, [agent, id]);
          });
          committed++;
        }
      })();
      const waitForWrites = async (n: number) => {
        const target = committed + n;
        while (committed < target) await new Promise((r) => setTimeout(r, 2));
      };
      await waitForWrites(3);
      const out = path.join(dir, 'x.avs');
      let duringExport = 0;
      const e = await exportAgents(db, {
        select: { all: true },
        out,
        batchSize: 50,
        onProgress: async (p) => {
          // let the writer commit between every step of the export
          if (p.phase === 'snapshot' || p.phase === 'agent' || p.phase === 'messages') {
            const c = committed;
            await waitForWrites(2);
            duringExport += committed - c;
          }
        },
      });
      stop = true;
      await loop;
      assert.ok(duringExport >= 20, `the writer committed ${duringExport} transactions during the export`);
      const { agents } = await readArchiveAgents(out);
      for (const a of agents) {
        const agent = a.doc.agents[0] as any;
        const dangling = checkV2References(a.doc).filter((f) => f.code === 'dangling-reference' && f.pointer.includes('in_context_message_ids'));
        assert.deepEqual(dangling, [], 'every in-context id names an exported message');
        assert.equal(agent.in_context_message_ids.at(-1), agent.messages.at(-1).id, 'the newest message is the last in context');
        const now = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE agent_id = $1`, [a.id]);
        assert.ok(now.rows[0].n > agent.messages.length, 'messages written after the snapshot are not in it');
        assert.equal(e.manifest.agents.find((m) => m.id === a.id)!.counts.messages, agent.messages.length);
      }
    } finally {
      stop = true;
      await writer.close();
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
