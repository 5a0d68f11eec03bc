import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseDocUri } from '../../../src/extension/documents';
import type { AgentGroupNode, ComponentNode, FolderNode, SnapshotNode, SnapshotsNode } from '../../../src/extension/snapshotsTree';
import { createArchiveWriter, openArchive } from '../../../src/format/archive';
import { packAgentFile } from '../../../src/format/pack';
import { readIndex } from '../../../src/vault/vault';
import { api, closeAllEditors, fixture, readJson } from './helpers';

type Tree = Awaited<ReturnType<typeof api>>['services']['snapshots'];

async function labels(tree: Tree, node?: SnapshotsNode): Promise<string[]> {
  return (await tree.getChildren(node)).map((n) => String(tree.getTreeItem(n).label));
}

async function child<T extends SnapshotsNode>(tree: Tree, node: SnapshotsNode | undefined, label: string | RegExp): Promise<T> {
  const kids = await tree.getChildren(node);
  const hit = kids.find((n) => {
    const l = String(tree.getTreeItem(n).label);
    return typeof label === 'string' ? l === label : label.test(l);
  });
  assert.ok(hit, `no "${label}" among ${kids.map((n) => tree.getTreeItem(n).label).join(', ')}`);
  return hit as T;
}

describe('Snapshots view: the vault folder as a tree', function () {
  this.timeout(60000);
  after(closeAllEditors);

  it('imports .af files into the vault and lists them grouped by agent, then time, as the index has them', async () => {
    const { services: s, vaultDir } = await api();
    const first = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.importAgentFile', fixture('loop.v2.af'));
    assert.ok(first, `import failed: ${JSON.stringify(s.log.lastError)}`);
    const second = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.importAgentFile', fixture('deep-research-agent.v2.af'));
    assert.ok(second);
    const third = await vscode.commands.executeCommand<{ path: string; snapshotId: string }>('agentVault.importAgentFile', fixture('loop.v2.af'));
    assert.ok(third);
    assert.ok(fs.existsSync(first.path) && first.path.startsWith(vaultDir()), 'the snapshot is a file in the vault');

    const index = await readIndex(vaultDir());
    assert.equal(index.snapshots.length, 3);
    const tree = s.snapshots;
    const groups = (await tree.getChildren()) as AgentGroupNode[];
    // one group per agent name (packed .af files have file-local ids), as many snapshots as the index lists for it
    const expected = new Map<string, string[]>();
    for (const rec of index.snapshots) for (const a of rec.agents) expected.set(a.name!, [...(expected.get(a.name!) ?? []), rec.id]);
    assert.deepEqual(groups.map((g) => g.name).sort(), [...expected.keys()].sort());
    for (const g of groups) {
      const snaps = (await tree.getChildren(g)) as SnapshotNode[];
      assert.deepEqual(snaps.map((n) => n.snapshot.id).sort(), expected.get(g.name!)!.sort(), `snapshots of ${g.name}`);
      // newest first
      const times = snaps.map((n) => n.snapshot.created_at);
      assert.deepEqual(times, [...times].sort().reverse());
    }
    const loop = groups.find((g) => g.name === 'Loop')!;
    assert.match(String(tree.getTreeItem(loop).description), /^2 snapshots/);
  });

  it('expands a snapshot into system prompt, memory blocks, tools, tool rules, models, messages (N) and passages (N)', async () => {
    const { services: s } = await api();
    const tree = s.snapshots;
    const doc = readJson<{ agents: Array<{ system: string; messages: unknown[] }>; blocks: Array<{ label: string; value: string }>; tools: Array<{ name: string }> }>(fixture('loop.v2.af'));
    const loop = await child<AgentGroupNode>(tree, undefined, 'Loop');
    const snap = (await tree.getChildren(loop))[0];
    assert.deepEqual(await labels(tree, snap), [
      'System prompt',
      `Memory blocks (${doc.blocks.length})`,
      `Tools (${doc.tools.length})`,
      'Tool rules',
      'Models',
      `Messages (${doc.agents[0].messages.length})`,
      'Passages (0)',
    ]);
    const blocks = await child<FolderNode>(tree, snap, /^Memory blocks/);
    assert.deepEqual(await labels(tree, blocks), doc.blocks.map((b) => b.label).sort());
    const tools = await child<FolderNode>(tree, snap, /^Tools/);
    assert.deepEqual(await labels(tree, tools), doc.tools.map((t) => t.name).sort());
    const models = await child<FolderNode>(tree, snap, 'Models');
    assert.deepEqual(await labels(tree, models), ['LLM config', 'Embedding config']);
  });

  it("opens components as read-only virtual documents with the snapshot's text", async () => {
    const { services: s } = await api();
    const tree = s.snapshots;
    const doc = readJson<{ agents: Array<{ system: string }>; blocks: Array<{ label: string; value: string }>; tools: Array<{ name: string; source_code: string | null }> }>(fixture('loop.v2.af'));
    const loop = await child<AgentGroupNode>(tree, undefined, 'Loop');
    const snap = (await tree.getChildren(loop))[0];
    const open = async (node: ComponentNode): Promise<vscode.TextDocument> => {
      const item = tree.getTreeItem(node);
      assert.equal(item.command?.command, 'agentVault.openDocument');
      await vscode.commands.executeCommand(item.command.command, ...(item.command.arguments ?? []));
      const ed = vscode.window.activeTextEditor;
      assert.ok(ed, 'an editor opened');
      assert.equal(ed.document.uri.scheme, 'agentvault');
      return ed.document;
    };
    const persona = await child<ComponentNode>(tree, await child(tree, snap, /^Memory blocks/), 'persona');
    const blockDoc = await open(persona);
    assert.equal(blockDoc.getText(), doc.blocks.find((b) => b.label === 'persona')!.value);
    assert.equal(path.posix.basename(blockDoc.uri.path), 'persona.md');
    // read-only: the content provider's scheme is not a writable file system
    assert.notEqual(vscode.workspace.fs.isWritableFileSystem('agentvault'), true);

    const prompt = await open(await child<ComponentNode>(tree, snap, 'System prompt'));
    assert.equal(prompt.getText(), doc.agents[0].system);

    const note = await open(await child<ComponentNode>(tree, await child(tree, snap, /^Tools/), 'note'));
    assert.equal(note.getText(), doc.tools.find((t) => t.name === 'note')!.source_code);
    assert.equal(note.languageId, 'python');

    const messages = await open(await child<ComponentNode>(tree, snap, /^Messages/));
    assert.match(messages.getText(), /^# Messages \(3\)/);
    const target = parseDocUri(messages.uri);
    assert.equal(target.kind, 'messages');
  });

  it('lists the Qdrant collections a snapshot holds', async () => {
    const { services: s, vaultDir } = await api();
    // an archive copied into the vault folder by hand, whose manifest records a collection
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-'));
    const file = path.join(vaultDir(), 'with-qdrant.avsnap');
    const { manifest } = await packAgentFile(fixture('deep-research-agent.v2.af'), path.join(tmp, 'x.avsnap'));
    assert.ok(manifest);
    // repack with a qdrant section through the archive writer
    const reader = await openArchive(path.join(tmp, 'x.avsnap'));
    const w = await createArchiveWriter(file);
    for (const e of reader.list()) await w.addBuffer(e.name, await reader.readEntry(e.name));
    const { entries: _e, format: _f, format_version: _v, tool: _t, ...rest } = reader.manifest;
    await w.finish({
      ...rest,
      qdrant: {
        server_version: '1.13.0',
        collections: [
          {
            name: 'letta_passages',
            points_count: 42,
            snapshot_entry: null,
            snapshot_size: 0,
            fingerprint: { vectors: { kind: 'named', params: { dense: { size: 1536, distance: 'Cosine' } } }, sparse_vectors: {}, payload_indexes: {} },
            fingerprint_sha256: 'f'.repeat(64),
          },
        ],
      },
    });
    await reader.close();
    s.snapshots.refresh();
    const tree = s.snapshots;
    const group = await child<AgentGroupNode>(tree, undefined, 'deep-thought-research-agent');
    const snaps = (await tree.getChildren(group)) as SnapshotNode[];
    const loose = snaps.find((n) => n.snapshot.path === file);
    assert.ok(loose, 'the loose archive is listed');
    assert.match(String(tree.getTreeItem(loose).description), /not in index/);
    const cols = await child<FolderNode>(tree, loose, 'Qdrant collections (1)');
    const kids = await tree.getChildren(cols);
    assert.equal(String(tree.getTreeItem(kids[0]).label), 'letta_passages');
    assert.match(String(tree.getTreeItem(kids[0]).description), /42 points · dense/);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('"Open Snapshot" shows what an archive outside the vault holds and adds it to the view', async () => {
    const { services: s } = await api();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-'));
    const file = path.join(tmp, 'outside.avsnap');
    await packAgentFile(fixture('memgpt-agent.v2-double-encoded.af'), file);
    const opened = await vscode.commands.executeCommand<string>('agentVault.openSnapshot', file);
    assert.equal(opened, file);
    const ed = vscode.window.activeTextEditor;
    assert.ok(ed);
    assert.match(ed.document.getText(), /Agent Vault snapshot archive/);
    const all = await s.snapshots.agentGroups();
    assert.ok(
      all.some((g) => g.snapshots.some((x) => x.path === file)),
      'the opened archive is in the tree',
    );
  });

  it('deletes a snapshot (index first, then the file) and the tree follows', async () => {
    const { services: s, vaultDir } = await api();
    const before = await readIndex(vaultDir());
    const victim = before.snapshots.find((r) => r.agents.some((a) => a.name === 'deep-thought-research-agent'))!;
    const file = path.join(vaultDir(), victim.file);
    const ok = await vscode.commands.executeCommand<boolean>('agentVault.deleteSnapshot', { snapshot: file, confirmed: true });
    assert.equal(ok, true, JSON.stringify(s.log.lastError));
    assert.equal(fs.existsSync(file), false);
    const after = await readIndex(vaultDir());
    assert.deepEqual(
      after.snapshots.map((r) => r.id),
      before.snapshots.filter((r) => r.id !== victim.id).map((r) => r.id),
    );
    const group = (await s.snapshots.agentGroups()).find((g) => g.name === 'deep-thought-research-agent');
    assert.ok(!group || group.snapshots.every((x) => x.path !== file));
  });
});
