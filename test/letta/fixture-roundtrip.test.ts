/**
 * The must-show of issue 12, for every fixture: restore with no flags into a NEW embedded (PGlite)
 * database → export → `validate` of the archive is valid (exit 0) → `diff` against the original
 * reports no change except those docs/RESTORE.md lists as intended ("What a round trip changes"):
 * per agent nothing (but the initial system message the restore writes for an agent that has no
 * in-context message, ezra.v2.af); outside the agents exactly the skills and unattached
 * blocks/tools the restore's plan listed as not carried.
 * Runs in about 35-45 s on the 2-core test machine (a PGlite database per fixture).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { diffPaths } from '../../src/diff/index';
import { renderText } from '../../src/cli/diff-render';
import { validateAnyPath } from '../../src/format/validate-any';
import { exportAgents } from '../../src/letta/export';
import { restoreAgents } from '../../src/letta/restore';
import { freshLettaDb } from '../helpers/letta-db';
import { fixtures } from '../helpers/paths';

describe('every fixture: restore into a new embedded database → export → validate → diff (issue 12)', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-fixture-rt-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const f of fixtures()) {
    it(f.file, async () => {
      const db = await freshLettaDb('pglite');
      const archive = path.join(dir, `${f.file}.avs`);
      let notCarried;
      let withSystemMessage: Set<string> | undefined;
      try {
        const r = await restoreAgents(db, f.path); // no flags
        notCarried = r.plan.not_carried;
        withSystemMessage = new Set(r.plan.agents.filter((p) => p.adds_system_message).map((p) => String(p.name)));
        assert.ok(r.plan.summary.created.length >= 1);
        await exportAgents(db, { select: { all: true }, out: archive });
      } finally {
        await db.close();
      }
      const v = await validateAnyPath(archive);
      assert.deepEqual(
        v.errors.map((e) => `${e.code} ${e.pointer}: ${e.message}`),
        [],
        'validate finds no error',
      );
      assert.equal(v.valid, true);
      const d = await diffPaths(f.path, archive);
      assert.equal(d.summary.agents_added + d.summary.agents_removed, 0, 'the same agents');
      // per agent: no change at all, except the system message a restore writes for an agent the
      // file gives no in-context message (docs/RESTORE.md): exactly one appended system message,
      // the only one in context
      let added = 0;
      for (const x of d.agents) {
        if (!withSystemMessage?.has(x.key)) continue;
        const m = x.messages;
        assert.deepEqual(
          { a: m.a_count, b: m.b_count, appended: m.appended, removed: m.removed, edited: m.edited, in_context: [m.in_context.a_count, m.in_context.b_count], role: m.samples.appended[0]?.b?.role },
          { a: 0, b: 1, appended: 1, removed: 0, edited: 0, in_context: [0, 1], role: 'system' },
          `${x.key}: the restore added its initial system message and nothing else to its messages`,
        );
        added += x.counts.messages;
      }
      assert.equal(d.summary.total_changes - d.summary.components_changed - added, 0, `diff reports no change of the agents:\n${renderText(d)}`);
      // outside the agents: exactly what the restore said it does not carry (docs/RESTORE.md), nothing else
      const c = d.components!;
      assert.ok(c, 'both sides tell their components');
      assert.deepEqual([c.skills.b_only, c.unattached_blocks.b_only, c.unattached_tools.b_only], [[], [], []], 'nothing appears');
      assert.deepEqual(c.skills.a_only.slice().sort(), notCarried!.skills.names.slice().sort(), 'lost skills = the ones the restore reported');
      assert.deepEqual(c.unattached_blocks.a_only.slice().sort(), notCarried!.unattached_blocks.labels.slice().sort(), 'lost blocks = the ones the restore reported');
      assert.deepEqual(c.unattached_tools.a_only.slice().sort(), notCarried!.unattached_tools.names.slice().sort(), 'lost tools = the ones the restore reported');
      assert.equal(d.identical, d.summary.components_changed === 0);
    });
  }
});
