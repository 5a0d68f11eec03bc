/*
 * End-to-end smoke through the UI, as a person would use the extension: package the .vsix, install
 * it into a fresh code-server with `--install-extension`, open the workbench in headless Chromium,
 * run "Agent Vault: Validate Agent File" from the command palette and check its notification.
 * Screenshots go to .test-output/e2e/. Run with `npm run test:e2e` (after scripts/provision-vscode.sh).
 */
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createVSIX } from '@vscode/vsce';
import type { Browser, Page } from 'playwright-core';
import * as cs from '../harness/code-server';

const OUT_DIR = path.join(cs.REPO_ROOT, '.test-output', 'e2e');
const COMMAND_TITLE = 'Agent Vault: Validate Agent File';
const NOTIFICATION = 'Agent Vault: validation is not implemented yet.';

describe('e2e: Agent Vault installed from its .vsix in code-server', function () {
  this.timeout(120_000);

  let sandbox: cs.Sandbox | undefined;
  let server: ChildProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const serverLog: string[] = [];

  before(async function () {
    this.timeout(600_000);
    cs.checkTools();
    fs.mkdirSync(OUT_DIR, { recursive: true });
    sandbox = cs.createSandbox();

    // Builds dist/ through the `vscode:prepublish` script, then zips what .vscodeignore lets in.
    const vsix = path.join(sandbox.root, 'agent-vault.vsix');
    await createVSIX({ cwd: cs.REPO_ROOT, packagePath: vsix, dependencies: false, allowMissingRepository: true });
    assert.ok(fs.statSync(vsix).size > 0, 'vsce wrote the .vsix');
    const installed = await cs.installExtension(sandbox, vsix);
    assert.match(installed, /successfully installed/i);

    const workspace = path.join(sandbox.root, 'workspace');
    fs.mkdirSync(workspace);
    const running = await cs.startCodeServer(sandbox, {
      onSpawn: (proc) => (server = proc),
      onLine: (line) => serverLog.push(line),
    });
    browser = await cs.launchChromium();
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await context.newPage();
    await page.goto(`${running.origin}/?folder=${encodeURIComponent(workspace)}`, { waitUntil: 'domcontentloaded' });
    // The workbench is ready for commands once the status bar and the explorer are rendered.
    await page.locator('.monaco-workbench .part.statusbar').waitFor({ state: 'visible', timeout: 180_000 });
    await page.locator('.explorer-folders-view, .explorer-viewlet').first().waitFor({ state: 'visible', timeout: 180_000 });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page && !page.isClosed()) {
      const shot = path.join(OUT_DIR, `failure-${(this.currentTest.title || 'test').replace(/\W+/g, '-')}.png`);
      await page.screenshot({ path: shot }).catch(() => undefined);
      console.error(`screenshot: ${path.relative(process.cwd(), shot)}`);
      if (serverLog.length) console.error(`code-server log (last 40 lines):\n${serverLog.slice(-40).join('\n')}`);
    }
  });

  after(async function () {
    this.timeout(60_000);
    await browser?.close().catch(() => undefined);
    await cs.killGroup(server);
    sandbox?.cleanup();
  });

  it('is installed in code-server\'s extensions dir under its publisher.name id', async () => {
    const entries = fs.readdirSync(sandbox!.extensionsDir);
    assert.ok(
      entries.some((e) => e.startsWith('agent-vault.agent-vault-')),
      `agent-vault.agent-vault-* not in ${sandbox!.extensionsDir}: ${entries.join(', ')}`,
    );
  });

  it(`runs "${COMMAND_TITLE}" from the command palette and shows its notification`, async () => {
    await page.locator('.monaco-workbench').click({ position: { x: 700, y: 400 } });
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input.input');
    await input.waitFor({ state: 'visible', timeout: 30_000 });
    await input.fill(`>${COMMAND_TITLE}`);
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: COMMAND_TITLE }).first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await page.screenshot({ path: path.join(OUT_DIR, 'command-palette.png') });
    await page.keyboard.press('Enter');

    const toast = page.locator('.notifications-toasts .notification-toast', { hasText: NOTIFICATION });
    await toast.waitFor({ state: 'visible', timeout: 60_000 });
    await page.screenshot({ path: path.join(OUT_DIR, 'validate-agent-file.png') });
    assert.equal(await toast.count(), 1, 'exactly one notification from the command');
    assert.match((await toast.innerText()).trim(), /Agent Vault: validation is not implemented yet\./);
  });
});
