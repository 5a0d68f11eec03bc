/*
 * End-to-end through the UI, as a person uses the extension: package the .vsix, install it into a
 * fresh code-server with `--install-extension`, open the workbench in headless Chromium and
 *   1. run "Agent Vault: Export Agents…" from the command palette against the real test PostgreSQL
 *      and see the new snapshot in the Snapshots side panel;
 *   2. open a memory block from the tree;
 *   3. change the agent's system prompt in the database, export again, run "Diff Snapshots…" and
 *      see the diff editor with the changed prompt;
 *   4. open a broken .af and see its errors in Problems;
 *   5. the vault's health and operations: the status bar item (stale, green, failing), a drill
 *      started from a snapshot item and its report, a restore started from a snapshot item (the
 *      plan, the confirmation), Run Backup Now and a drill of a damaged snapshot from the palette.
 * Screenshots of every step go to .test-output/e2e/. Run with `npm run test:e2e` (after
 * scripts/provision-vscode.sh).
 */
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createVSIX } from '@vscode/vsce';
import type { Browser, Locator, Page } from 'playwright-core';
import { openPg } from '../../../src/db/pg';
import { listAgents } from '../../../src/letta/export';
import type { VaultIndex } from '../../../src/vault/vault';
import * as cs from '../harness/code-server';
import { startExtensionTestPg, type StartedPg } from '../pg-setup';
import { BROKEN_CALL_ID, BROKEN_DANGLING_ID, brokenAgentFileText } from '../test-files';

const OUT_DIR = path.join(cs.REPO_ROOT, '.test-output', 'e2e');
const FIXTURES = path.resolve(cs.REPO_ROOT, '..', 'shared', 'fixtures', 'af');
const PROMPT_LINE = 'Keep every answer under three sentences (changed for the e2e diff).';

/** A snapshot item's label in the Snapshots view: its local time (src/extension/snapshotsTree.ts snapshotTime). */
function snapLabel(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

describe('e2e: Agent Vault installed from its .vsix in code-server', function () {
  this.timeout(120_000);

  let sandbox: cs.Sandbox | undefined;
  let server: ChildProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let pg: StartedPg | undefined;
  let workspace: string;
  const serverLog: string[] = [];
  let shot = 0;

  const screenshot = async (name: string) => {
    const file = path.join(OUT_DIR, `${String(++shot).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
    return file;
  };
  const vaultIndex = (): VaultIndex => JSON.parse(fs.readFileSync(path.join(workspace, '.agent-vault', 'vault.json'), 'utf8')) as VaultIndex;

  /** Runs a command from the palette by its title; `rest` are keys/texts for the prompts after it. */
  async function palette(title: string): Promise<void> {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: 30_000 });
    await input.fill(`>${title}`);
    await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ state: 'visible', timeout: 30_000 });
    await page.keyboard.press('Enter');
  }

  async function quickPickRow(text: string): Promise<Locator> {
    const row = page.locator('.quick-input-widget .quick-input-list .monaco-list-row', { hasText: text }).first();
    await row.waitFor({ state: 'visible', timeout: 60_000 });
    return row;
  }

  function pane(view: 'Snapshots' | 'Databases' | 'Changes'): Locator {
    return page.locator('.pane', { has: page.locator('.pane-header', { hasText: new RegExp(`^\\s*${view}`, 'i') }) });
  }

  /** A row of a view in the Agent Vault side bar. */
  function viewRow(view: 'Snapshots' | 'Databases' | 'Changes', text: string | RegExp): Locator {
    return pane(view).locator('.monaco-list-row', { hasText: text }).first();
  }

  /** Editor text with soft wraps and non-breaking spaces folded into single spaces. */
  const flat = (s: string) => s.replace(/[\s\u00a0]+/g, ' ');

  /** Waits until one of the elements matched by `locator` shows `text` (compared with flat()). */
  async function waitForText(locator: Locator, text: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const texts = await locator.allInnerTexts().catch(() => [] as string[]);
      if (texts.some((t) => flat(t).includes(text))) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(text)}; saw ${JSON.stringify(texts.map(flat).join(' | ').slice(0, 300))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  before(async function () {
    this.timeout(600_000);
    cs.checkTools();
    fs.rmSync(OUT_DIR, { recursive: true, force: true });
    fs.mkdirSync(OUT_DIR, { recursive: true });
    pg = await startExtensionTestPg();
    sandbox = cs.createSandbox();

    // Builds dist/ through the `vscode:prepublish` script, then zips what .vscodeignore lets in.
    const vsix = path.join(sandbox.root, 'agent-vault.vsix');
    await createVSIX({ cwd: cs.REPO_ROOT, packagePath: vsix, dependencies: false, allowMissingRepository: true, rewriteRelativeLinks: false });
    const size = fs.statSync(vsix).size;
    assert.ok(size > 0 && size < 5 * 1024 * 1024, `the .vsix is small (${size} bytes)`);
    console.log(`      .vsix: ${(size / 1024).toFixed(0)} KB`);
    assert.match(await cs.installExtension(sandbox, vsix), /successfully installed/i);

    workspace = path.join(sandbox.root, 'workspace');
    fs.mkdirSync(path.join(workspace, '.vscode'), { recursive: true });
    const p = pg.info;
    fs.writeFileSync(
      path.join(workspace, '.vscode', 'settings.json'),
      JSON.stringify({ 'agentVault.connections': [{ name: 'letta-test', host: p.host, port: p.port, database: p.source, user: p.user, schema: 'letta' }] }, null, 2),
    );
    fs.writeFileSync(path.join(workspace, 'broken.af'), brokenAgentFileText(fs.readFileSync(path.join(FIXTURES, 'deep-research-agent.v2.af'), 'utf8')));

    const running = await cs.startCodeServer(sandbox, { onSpawn: (proc) => (server = proc), onLine: (line) => serverLog.push(line) });
    browser = await cs.launchChromium();
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await context.newPage();
    await page.goto(`${running.origin}/?folder=${encodeURIComponent(workspace)}`, { waitUntil: 'domcontentloaded' });
    await page.locator('.monaco-workbench .part.statusbar').waitFor({ state: 'visible', timeout: 180_000 });
    await page.locator('.explorer-folders-view, .explorer-viewlet').first().waitFor({ state: 'visible', timeout: 180_000 });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page && !page.isClosed()) {
      const file = path.join(OUT_DIR, `failure-${(this.currentTest.title || 'test').replace(/\W+/g, '-').slice(0, 60)}.png`);
      await page.screenshot({ path: file }).catch(() => undefined);
      console.error(`screenshot: ${path.relative(process.cwd(), file)}`);
      if (serverLog.length) console.error(`code-server log (last 40 lines):\n${serverLog.slice(-40).join('\n')}`);
    }
  });

  after(async function () {
    this.timeout(60_000);
    await browser?.close().catch(() => undefined);
    await cs.killGroup(server);
    sandbox?.cleanup();
    await pg?.stop().catch(() => undefined);
  });

  it("is installed in code-server's extensions dir under its publisher.name id", () => {
    const entries = fs.readdirSync(sandbox!.extensionsDir);
    assert.ok(
      entries.some((e) => e.startsWith('agent-vault.agent-vault-')),
      `agent-vault.agent-vault-* not in ${sandbox!.extensionsDir}: ${entries.join(', ')}`,
    );
  });

  it('runs "Export Agents…" from the command palette and shows the new snapshot in the side panel', async () => {
    // the Agent Vault container in the activity bar
    await page.locator('.activitybar .action-item a[aria-label^="Agent Vault"]').click();
    // an empty vault: the welcome view explains what a snapshot is, with buttons to start
    const welcome = pane('Snapshots').locator('.welcome-view-content');
    await welcome.waitFor({ state: 'visible', timeout: 60_000 });
    await waitForText(welcome, 'A snapshot is one archive');
    for (const b of ['Export Agents…', 'Import .af into Vault', 'Open Vault Settings']) await welcome.locator('.monaco-button', { hasText: b }).first().waitFor({ state: 'visible', timeout: 10_000 });
    await viewRow('Databases', 'letta-test').waitFor({ state: 'visible', timeout: 30_000 });
    await screenshot('welcome-view');

    await palette('Agent Vault: Export Agents…');
    const loopRow = await quickPickRow('Loop');
    assert.match(await loopRow.innerText(), /3 messages · 0 passages/);
    await quickPickRow('LettaBot');
    await screenshot('export-pick-agents');
    await page.keyboard.press('Enter');

    const agent = viewRow('Snapshots', /^\s*Loop/);
    await agent.waitFor({ state: 'visible', timeout: 60_000 });
    const snap = vaultIndex().snapshots;
    assert.equal(snap.length, 1, 'one snapshot in the vault');
    assert.deepEqual(snap[0].agents.map((a) => a.name).sort(), ['LettaBot', 'Loop']);
    await agent.click();
    await viewRow('Snapshots', snapLabel(snap[0].created_at)).waitFor({ state: 'visible', timeout: 30_000 });
    await screenshot('export-snapshot-in-side-panel');
  });

  it('opens a memory block from the tree as a read-only document', async () => {
    const persona = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'loop.v2.af'), 'utf8')) as { blocks: Array<{ label: string; value: string }> }).blocks.find((b) => b.label === 'persona')!;
    const id = snapLabel(vaultIndex().snapshots[0].created_at);
    // the export revealed the snapshot under both of its agents: collapse all, open Loop's
    await pane('Snapshots').locator('.pane-header').hover();
    await pane('Snapshots').locator('.pane-header .actions a[aria-label="Collapse All"]').click();
    await viewRow('Snapshots', /^\s*Loop/).click();
    await viewRow('Snapshots', id).click();
    await viewRow('Snapshots', /Memory blocks \(9\)/).click();
    await viewRow('Snapshots', /^\s*persona/).click();
    const tab = page.locator('.tabs-container .tab.active', { hasText: 'persona.md' });
    await tab.waitFor({ state: 'visible', timeout: 30_000 });
    const firstWords = flat(persona.value).slice(0, 30);
    const editor = page.locator('.editor-instance .monaco-editor .view-lines').first();
    await waitForText(page.locator('.editor-instance .monaco-editor .view-lines'), firstWords);
    assert.ok(flat(await editor.innerText()).includes(firstWords));
    await screenshot('memory-block-opened');
  });

  it('runs "Diff Snapshots…" and shows the diff editor with the changed system prompt', async () => {
    // change the agent in the database, and export again
    const db = await openPg({ url: pg!.urlOf(pg!.info.source) });
    try {
      const loop = (await listAgents(db)).find((a) => a.name === 'Loop')!;
      await db.query(`UPDATE agents SET system = system || $2 WHERE id = $1`, [loop.id, `\n${PROMPT_LINE}`]);
    } finally {
      await db.close();
    }
    await palette('Agent Vault: Export Agents…');
    await quickPickRow('Loop');
    await page.keyboard.press('Enter');
    const deadline = Date.now() + 60_000;
    while (vaultIndex().snapshots.length < 2) {
      assert.ok(Date.now() < deadline, 'the second export did not finish');
      await new Promise((r) => setTimeout(r, 200));
    }
    const [older, newer] = vaultIndex().snapshots;
    await viewRow('Snapshots', snapLabel(newer.created_at)).waitFor({ state: 'visible', timeout: 30_000 });

    await palette('Agent Vault: Diff Snapshots…');
    const input = page.locator('.quick-input-widget input.input');
    await quickPickRow(older.id);
    await input.fill(older.id);
    await screenshot('diff-pick-first-snapshot');
    await page.keyboard.press('Enter');
    await quickPickRow(newer.id);
    await input.fill(newer.id);
    await page.keyboard.press('Enter');

    const modified = page.locator('.monaco-diff-editor .editor.modified .view-lines');
    await modified.first().waitFor({ state: 'visible', timeout: 60_000 });
    await waitForText(modified, PROMPT_LINE);
    const original = await page.locator('.monaco-diff-editor .editor.original .view-lines').first().innerText();
    assert.ok(!flat(original).includes(PROMPT_LINE), 'the older snapshot does not have the new line');
    await page.locator('.tabs-container .tab.active', { hasText: 'Loop: system prompt' }).waitFor({ state: 'visible', timeout: 10_000 });
    await viewRow('Changes', 'system prompt').waitFor({ state: 'visible', timeout: 30_000 });
    await screenshot('diff-editor-changed-prompt');
  });

  it('opens a broken .af and shows its reference errors in Problems', async () => {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: 30_000 });
    await input.fill('broken.af');
    await quickPickRow('broken.af');
    await page.keyboard.press('Enter');
    await page.locator('.tabs-container .tab.active', { hasText: 'broken.af' }).waitFor({ state: 'visible', timeout: 30_000 });
    await palette('Problems: Focus on Problems View');
    const problems = page.locator('.markers-panel .monaco-list-row');
    const dangling = problems.filter({ hasText: BROKEN_DANGLING_ID }).first();
    await dangling.waitFor({ state: 'visible', timeout: 60_000 });
    const orphan = problems.filter({ hasText: BROKEN_CALL_ID }).first();
    await orphan.waitFor({ state: 'visible', timeout: 30_000 });
    assert.match(await dangling.innerText(), /dangling/);
    assert.match(await orphan.innerText(), /orphaned tool call|no tool return/);
    await screenshot('problems-broken-af');
  });

  // ------------------------------------------------------------------------------------------
  // the vault's health and operations

  const statusItem = () => page.locator('.part.statusbar .statusbar-item', { hasText: /Vault/ }).first();

  async function waitForStatus(re: RegExp, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const t = flat(
        await statusItem()
          .innerText()
          .catch(() => ''),
      );
      if (re.test(t)) return t;
      if (Date.now() > deadline) throw new Error(`timed out waiting for the status bar item to match ${re}; it says ${JSON.stringify(t)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Right-clicks a Snapshots row and runs an item of its context menu. */
  async function contextMenu(row: Locator, item: string): Promise<void> {
    await row.click({ button: 'right' });
    const entry = page.locator('.context-view .monaco-menu .action-item', { hasText: item }).first();
    await entry.waitFor({ state: 'visible', timeout: 15_000 });
    // the menu has the keyboard focus: hovering selects the entry, Enter runs it
    await entry.hover();
    await page.keyboard.press('Enter');
    await entry.waitFor({ state: 'hidden', timeout: 10_000 });
  }

  it('shows the vault\'s health in the status bar: "stale" while no snapshot was ever drilled', async () => {
    await page.keyboard.press('Escape');
    const text = await waitForStatus(/Vault .*never drilled/);
    assert.match(text, /Vault (just now|\d+ min ago)/);
    assert.match((await statusItem().getAttribute('class')) ?? '', /warning-kind/);
    await screenshot('status-bar-stale');
  });

  it('drills a snapshot from its item in the Snapshots view and shows a readable report; the status bar turns green', async () => {
    const [first] = vaultIndex().snapshots; // holds both agents
    await pane('Snapshots').locator('.pane-header').hover();
    await pane('Snapshots').locator('.pane-header .actions a[aria-label="Collapse All"]').click();
    await viewRow('Snapshots', /^\s*LettaBot/).click();
    const row = viewRow('Snapshots', snapLabel(first.created_at));
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await contextMenu(row, 'Drill Snapshot');
    const editor = page.locator('.editor-instance .monaco-editor .view-lines');
    await waitForText(editor, 'Restore drill: PASSED', 110_000);
    await waitForText(editor, 'Time to restore (RTO)');
    await waitForText(editor, '| row-counts | pass');
    await screenshot('drill-report');
    const text = await waitForStatus(/Vault .*drill passed/);
    assert.match((await statusItem().getAttribute('class')) ?? '', /^(?!.*(warning|error)-kind)/);
    console.log(`      status bar: ${text}`);
    await screenshot('status-bar-green');
  });

  it('shows "stale" again when the newest snapshot is older than the policy (26 h)', async () => {
    const file = path.join(workspace, '.agent-vault', 'vault.json');
    const original = fs.readFileSync(file, 'utf8');
    const idx = JSON.parse(original) as VaultIndex;
    for (const x of idx.snapshots) x.created_at = new Date(Date.now() - 3 * 24 * 3600_000).toISOString();
    fs.writeFileSync(file, JSON.stringify(idx, null, 2));
    try {
      await waitForStatus(/Vault 3 days ago · drill passed/);
      assert.match((await statusItem().getAttribute('class')) ?? '', /warning-kind/);
      await screenshot('status-bar-stale-old-backup');
    } finally {
      fs.writeFileSync(file, original);
    }
    await waitForStatus(/Vault (just now|\d+ min ago) · drill passed/);
  });

  it('restores an agent from its snapshot item: conflict choice, the dry-run plan as a document, the confirmation', async () => {
    const [first] = vaultIndex().snapshots;
    const row = viewRow('Snapshots', snapLabel(first.created_at));
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    // the previous test rewrote vault.json: let the view's refresh (file watcher) settle, or the
    // context menu can run on an item VS Code has just replaced and the command gets no item
    await page.waitForTimeout(2000);
    await contextMenu(row, 'Restore to…');
    // the snapshot holds two agents: this item's agent only, or every agent of the snapshot
    await quickPickRow('All 2 agents of this snapshot');
    await quickPickRow('Only LettaBot');
    await page.locator('.quick-input-widget input.input').fill('Only');
    await page.keyboard.press('Enter');
    // one connection: no connection pick; the conflict rule
    await quickPickRow('Replace');
    await page.locator('.quick-input-widget input.input').fill('Replace');
    await page.keyboard.press('Enter');
    const dialog = page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 60_000 });
    await waitForText(dialog, 'Restore 1 agent into "letta-test"?');
    await waitForText(page.locator('.editor-instance .monaco-editor .view-lines'), 'LettaBot');
    await screenshot('restore-plan-and-confirmation');
    await dialog.locator('.monaco-button', { hasText: /^Restore$/ }).click();
    const note = page.locator('.notifications-toasts .notification-toast', { hasText: 'restored 1 agent into "letta-test"' }).first();
    await note.waitFor({ state: 'visible', timeout: 60_000 });
    await screenshot('restore-done');
  });

  it('Run Backup Now, then a drill of that snapshot damaged on disk: the status bar says "failing"', async () => {
    const before = vaultIndex().snapshots.length;
    await palette('Agent Vault: Run Backup Now');
    const deadline = Date.now() + 60_000;
    while (vaultIndex().snapshots.length === before) {
      assert.ok(Date.now() < deadline, 'the backup did not finish');
      await new Promise((r) => setTimeout(r, 200));
    }
    const newest = vaultIndex().snapshots[before];
    assert.equal(newest.agents.length, 2, 'every agent of the connection');
    const file = path.join(workspace, '.agent-vault', newest.file);
    const buf = fs.readFileSync(file);
    for (let i = Math.floor(buf.length / 2); i < Math.floor(buf.length / 2) + 64; i++) buf[i] ^= 0xff;
    fs.writeFileSync(file, buf);
    await palette('Agent Vault: Drill Snapshot');
    await quickPickRow(newest.id);
    await page.locator('.quick-input-widget input.input').fill(newest.id);
    await page.keyboard.press('Enter');
    await waitForText(page.locator('.editor-instance .monaco-editor .view-lines'), 'Restore drill: FAILED', 110_000);
    await waitForStatus(/Vault .* · drill failed/);
    assert.match((await statusItem().getAttribute('class')) ?? '', /error-kind/);
    await screenshot('status-bar-failing');
  });
});
