/**
 * Issue 12, point 5: diff matches by stable identity, never by file-local ids an export renumbers,
 * and reports every component present on one side only (skills, blocks/tools no agent attaches).
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { diffPaths } from '../../src/diff/index';
import { renderText } from '../../src/cli/diff-render';
import { getValidator } from '../../src/format/schemas';
import { fixture, fixtureV2, TempDir } from './helpers';

describe('diff: stable identity and one-sided components', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('renumbered file-local message ids (as an export writes them, overlapping the old numbers) are no change', async () => {
    const doc = await fixtureV2('memgpt-agent-with-convo.v2');
    const b = structuredClone(doc);
    const renum = (id: string) => id.replace(/^message-(\d+)$/, (_, n) => `message-${Number(n) + 1}`);
    for (const a of b.agents as any[]) {
      for (const m of a.messages ?? []) m.id = renum(m.id);
      a.in_context_message_ids = (a.in_context_message_ids ?? []).map(renum);
    }
    const f = tmp.file('renum.af');
    writeFileSync(f, JSON.stringify(b));
    const d = await diffPaths(fixture('memgpt-agent-with-convo.v2'), f);
    assert.equal(d.identical, true, renderText(d));
  });

  it('skills, and blocks/tools that no agent attaches, present on one side only are reported and counted', async () => {
    const doc = await fixtureV2('ezra.v2');
    const b = structuredClone(doc) as any;
    const used = new Set<string>((b.agents as any[]).flatMap((a) => a.block_ids ?? []));
    const usedTools = new Set<string>((b.agents as any[]).flatMap((a) => a.tool_ids ?? []));
    const lostBlocks = (b.blocks as any[]).filter((x) => !used.has(x.id));
    const lostTools = (b.tools as any[]).filter((x) => !usedTools.has(x.id));
    assert.ok(lostBlocks.length > 0 && lostTools.length > 0 && b.skills.length > 0);
    b.blocks = b.blocks.filter((x: any) => used.has(x.id));
    b.tools = b.tools.filter((x: any) => usedTools.has(x.id));
    const skills = b.skills.map((s: any) => s.name);
    b.skills = [{ ...doc.skills![0], name: 'a-new-skill' }];
    const f = tmp.file('lossy.af');
    writeFileSync(f, JSON.stringify(b));
    const d = await diffPaths(fixture('ezra.v2'), f);
    assert.equal(d.identical, false);
    assert.deepEqual(d.components!.skills, { a_only: skills, b_only: ['a-new-skill'] });
    assert.equal(d.components!.unattached_blocks.a_only.length, lostBlocks.length);
    assert.equal(d.components!.unattached_tools.a_only.length, lostTools.length);
    assert.equal(d.summary.components_changed, skills.length + 1 + lostBlocks.length + lostTools.length);
    assert.equal(d.summary.total_changes, d.summary.components_changed, 'the agents themselves are unchanged');
    assert.match(renderText(d), /− skill|- skill "/);
    assert.match(renderText(d), /\+ skill "a-new-skill": only in B/);
    const validate = getValidator('diff');
    assert.ok(validate(JSON.parse(JSON.stringify(d))), JSON.stringify(validate.errors?.slice(0, 3)));
  });
});
