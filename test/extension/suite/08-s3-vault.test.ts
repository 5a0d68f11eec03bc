/*
 * The Snapshots view on a vault in object storage: agentVault.vaultPath set to an s3:// location
 * of the test S3 server (moto on 127.0.0.1, started by test/extension/run.ts; credentials only
 * in the AWS environment). Snapshots are listed from the bucket's index without a download; a
 * snapshot is downloaded into the extension's bounded cache when expanded and its components open
 * as documents; commands that write a vault folder refuse the location with what to do instead.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { AgentGroupNode, ComponentNode, FolderNode, SnapshotNode } from '../../../src/extension/snapshotsTree';
import { packAgentFile } from '../../../src/format/pack';
import { addSnapshotToVault } from '../../../src/vault/catalog';
import { copyVault, readStoreIndex } from '../../../src/vault/remote/copy';
import { S3Store } from '../../../src/vault/remote/s3';
import { LocalStore } from '../../../src/vault/remote/store';
import { S3_ENV_NAME, type ExtTestS3 } from '../s3-env';
import { api, closeAllEditors, fixture, readJson } from './helpers';

describe('Snapshots view: a vault in object storage (s3://, moto)', function () {
  this.timeout(120000);
  let loc: string;
  let local: string;

  before(async () => {
    const raw = process.env[S3_ENV_NAME];
    assert.ok(raw, `${S3_ENV_NAME} is not set: run the tests through test/extension/run.ts`);
    assert.ok(process.env.AWS_ACCESS_KEY_ID, 'the credentials come from the AWS environment');
    const { endpoint } = JSON.parse(raw) as ExtTestS3;
    const c = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
    await c.send(new CreateBucketCommand({ Bucket: 'av-ext-offsite' }));
    c.destroy();
    local = fs.mkdtempSync(path.join(os.tmpdir(), 'av-ext-s3-src-'));
    for (const f of ['loop.v2.af', 'deep-research-agent.v2.af', 'loop.v2.af']) await addSnapshotToVault(local, (dest) => packAgentFile(fixture(f), dest), { command: 'test' });
    loc = `s3://av-ext-offsite/team?endpoint=${encodeURIComponent(endpoint)}&path-style=true`;
    const r = await copyVault(new LocalStore(local), new S3Store(loc), { lock: { settleMs: 20 } });
    assert.equal(r.copied, 3);
    await vscode.workspace.getConfiguration('agentVault').update('vaultPath', loc, vscode.ConfigurationTarget.Workspace);
  });

  after(async () => {
    await vscode.workspace.getConfiguration('agentVault').update('vaultPath', undefined, vscode.ConfigurationTarget.Workspace);
    await closeAllEditors();
    fs.rmSync(local, { recursive: true, force: true });
  });

  it('lists the snapshots of the bucket from its index, grouped by agent, without downloading any', async () => {
    const { services: s, vaultDir } = await api();
    assert.equal(vaultDir(), loc, 'an s3:// vaultPath is taken as it is, not as a folder');
    s.snapshots.refresh();
    // (archives opened with "Open Snapshot" earlier in the session are shown too: only the bucket's are counted here)
    const groups = ((await s.snapshots.getChildren()) as AgentGroupNode[]).filter((g) => g.snapshots.some((x) => x.listed));
    const index = (await readStoreIndex(new S3Store(loc)))!;
    const names = new Set(index.snapshots.flatMap((x) => x.agents.map((a) => a.name)));
    assert.equal(names.size, 2);
    assert.deepEqual(groups.map((g) => g.name).sort(), [...names].sort());
    const loop = groups.find((g) => g.name === 'Loop')!;
    assert.match(String(s.snapshots.getTreeItem(loop).description), /^2 snapshots/);
    const nodes = s.snapshots.snapshotNodes(loop);
    assert.deepEqual(
      nodes.map((n) => n.snapshot.id).sort(),
      index.snapshots
        .filter((x) => x.agents.some((a) => a.name === 'Loop'))
        .map((x) => x.id)
        .sort(),
    );
    const remote = s.snapshots.remote!;
    assert.equal(remote.downloads, 0, 'listing reads only the index');
    for (const n of nodes) assert.equal(fs.existsSync(n.snapshot.path), false);
  });

  it("a snapshot expanded is downloaded into the cache once; its components open as documents with the snapshot's text", async () => {
    const { services: s } = await api();
    const doc = readJson<{ blocks: Array<{ label: string; value: string }>; tools: Array<{ name: string; source_code: string | null }> }>(fixture('loop.v2.af'));
    const loop = ((await s.snapshots.getChildren()) as AgentGroupNode[]).find((g) => g.name === 'Loop')!;
    const snap: SnapshotNode = s.snapshots.snapshotNodes(loop)[0];
    const remote = s.snapshots.remote!;
    const before = remote.downloads;
    const kids = await s.snapshots.getChildren(snap);
    const labels = kids.map((k) => String(s.snapshots.getTreeItem(k).label));
    assert.ok(labels.includes('System prompt'), labels.join(', '));
    assert.equal(remote.downloads, before + 1);
    assert.ok(fs.existsSync(snap.snapshot.path), 'the archive is in the cache');
    const blocks = kids.find((k) => /^Memory blocks/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const persona = (await s.snapshots.getChildren(blocks)).find((k) => s.snapshots.getTreeItem(k).label === 'persona') as ComponentNode;
    const uri = s.snapshots.getTreeItem(persona).command!.arguments![0] as vscode.Uri;
    const text = (await vscode.workspace.openTextDocument(uri)).getText();
    assert.equal(text, doc.blocks.find((b) => b.label === 'persona')!.value);

    // evicted from the cache meanwhile: opening a document downloads the snapshot again
    fs.rmSync(snap.snapshot.path);
    s.documents.sources.forgetAll();
    const tools = kids.find((k) => /^Tools/.test(String(s.snapshots.getTreeItem(k).label))) as FolderNode;
    const note = (await s.snapshots.getChildren(tools)).find((k) => s.snapshots.getTreeItem(k).label === 'note') as ComponentNode;
    const noteDoc = await vscode.workspace.openTextDocument(s.snapshots.getTreeItem(note).command!.arguments![0] as vscode.Uri);
    assert.equal(noteDoc.getText(), doc.tools.find((t) => t.name === 'note')!.source_code);
    assert.equal(remote.downloads, before + 2);
  });

  it('the status report reads the bucket; commands that write a vault folder refuse the s3:// location and say what to do', async () => {
    const { services: s } = await api();
    const st = await vscode.commands.executeCommand<{ snapshots: number; vault: string }>('agentVault.showStatus');
    assert.ok(st, `status failed: ${JSON.stringify(s.log.lastError)}`);
    assert.equal(st.snapshots, 3);
    assert.match(st.vault, /^s3:\/\/av-ext-offsite\/team\//);
    const r = await vscode.commands.executeCommand('agentVault.importAgentFile', fixture('loop.v2.af'));
    assert.equal(r, undefined);
    assert.match(JSON.stringify(s.log.lastError), /works on a vault folder; s3:\/\/av-ext-offsite\/team.* is a vault in object storage/);
    assert.equal(fs.existsSync(path.resolve('s3:')), false, 'no local folder named after the location was made');
  });
});
