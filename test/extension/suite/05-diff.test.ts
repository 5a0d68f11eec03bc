import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ChangeNode, CurrentDiff } from '../../../src/extension/diffView';
import { MODIFIED, modifiedAgentFileText } from '../test-files';
import { activeDiff, api, closeAllEditors, fixture, readJson, workspaceDir } from './helpers';

describe('Diff view: semantic diff, Changes view and side-by-side component diffs', function () {
  this.timeout(60000);
  let left: string;
  let right: string;
  let cur: CurrentDiff;
  const base = () => readJson<{ agents: Array<{ system: string }>; blocks: Array<{ label: string; value: string }>; tools: Array<{ name: string; source_code: string }> }>(fixture('loop.v2.af'));

  before(async () => {
    const modified = path.join(workspaceDir(), 'loop-modified.af');
    fs.writeFileSync(modified, modifiedAgentFileText(fs.readFileSync(fixture('loop.v2.af'), 'utf8')));
    const a = await vscode.commands.executeCommand<{ path: string }>('agentVault.importAgentFile', fixture('loop.v2.af'));
    const b = await vscode.commands.executeCommand<{ path: string }>('agentVault.importAgentFile', modified);
    assert.ok(a && b);
    left = a.path;
    right = b.path;
  });
  after(closeAllEditors);

  it('"Diff Snapshots" computes the semantic diff and opens the changed system prompt side by side', async () => {
    const r = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffSnapshots', { left, right, openFirst: true });
    assert.ok(r);
    cur = r;
    const d = cur.report.agents[0];
    assert.equal(d.status, 'changed');
    assert.equal(d.counts.system_prompt, 1);
    assert.equal(d.counts.memory_blocks, 1);
    assert.equal(d.counts.tools, 1);
    assert.equal(d.counts.workflows, 1);
    assert.ok(d.counts.embedding_config > 0);
    const { left: l, right: rr } = await activeDiff();
    assert.equal(l.getText(), base().agents[0].system);
    assert.equal(rr.getText(), `${base().agents[0].system}\n${MODIFIED.promptLine}`);
  });

  it('lists the categories in the Changes view, and marks the embedding change as needing re-embedding', async () => {
    const { services: s } = await api();
    const tree = s.changes;
    const roots = tree.getChildren();
    const labels = roots.map((n) => String(tree.getTreeItem(n).label));
    assert.match(labels[0], /↔/);
    for (const c of ['system prompt', 'memory blocks', 'tools', 'workflows', 'embedding config']) assert.ok(labels.includes(c), `${c} in ${labels.join(', ')}`);
    const emb = roots.find((n) => tree.getTreeItem(n).label === 'embedding config')!;
    assert.match(String(tree.getTreeItem(emb).description), /needs re-embedding/);
    const embItem = tree.getChildren(emb)[0];
    assert.match(String(tree.getTreeItem(embItem).description), /^needs re-embedding/);
    assert.equal((tree.getTreeItem(embItem).iconPath as vscode.ThemeIcon).id, 'warning');
  });

  it('each change opens its component diff: the block, the tool source, the rules as text, the embedding config', async () => {
    const { services: s } = await api();
    const changes = s.changes.changes();
    const open = async (label: string) => {
      const node = changes.find((c) => c.item.label === label || c.item.label.startsWith(label)) as ChangeNode;
      assert.ok(node, `change "${label}" in ${changes.map((c) => c.item.label).join(', ')}`);
      const item = s.changes.getTreeItem(node);
      await vscode.commands.executeCommand(item.command!.command, ...(item.command!.arguments ?? []));
      return activeDiff();
    };
    const b = base();
    let d = await open(MODIFIED.block);
    assert.equal(d.left.getText(), b.blocks.find((x) => x.label === MODIFIED.block)!.value);
    assert.equal(d.right.getText(), `${b.blocks.find((x) => x.label === MODIFIED.block)!.value}\n${MODIFIED.blockLine}`);
    assert.match(d.label, new RegExp(MODIFIED.block));

    d = await open(MODIFIED.tool);
    assert.equal(d.left.getText(), b.tools.find((x) => x.name === MODIFIED.tool)!.source_code);
    assert.ok(d.right.getText().includes(MODIFIED.toolLine));
    assert.equal(d.right.languageId, 'python');

    d = await open('init web_search');
    assert.equal(d.left.getText(), '(no tool rules)\n');
    assert.equal(d.right.getText(), 'init web_search\n');

    d = await open('embedding config');
    assert.match(d.left.getText(), /"embedding_model": "text-embedding-3-small"/);
    assert.match(d.right.getText(), new RegExp(`"embedding_model": "${MODIFIED.embeddingModel}"`));
  });

  it('"Diff with Previous Snapshot" from the tree compares an agent\'s snapshot with the one before it', async () => {
    const { services: s } = await api();
    const groups = await s.snapshots.agentGroups();
    const loop = groups.find((g) => g.name === 'Loop' && g.key.startsWith('name:'))!;
    const newest = s.snapshots.snapshotNodes(loop)[0];
    assert.equal(newest.snapshot.path, right);
    const r = await vscode.commands.executeCommand<CurrentDiff>('agentVault.diffWithPrevious', newest);
    assert.ok(r, JSON.stringify(s.log.lastError));
    assert.equal(r.left.path, left);
    assert.equal(r.report.agents[0].counts.system_prompt, 1);
  });
});
