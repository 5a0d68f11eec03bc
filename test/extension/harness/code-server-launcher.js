#!/usr/bin/env node
/*
 * A stand-in for the desktop VS Code executable, for machines where only the web build of VS Code
 * (code-server, installed by scripts/provision-vscode.sh) and Debian's Chromium are available.
 *
 * @vscode/test-electron's runTests() spawns `vscodeExecutablePath` with VS Code's CLI arguments
 * (`--extensionDevelopmentPath=…`, `--extensionTestsPath=…`, `--user-data-dir …`,
 * `--extensions-dir …`, flags, and an optional workspace folder). This script:
 *   1. starts code-server on a free loopback port (127.0.0.1 only, --auth none, telemetry off,
 *      HOME and gallery isolated, temp/given user-data-dir and extensions-dir);
 *   2. launches Chromium through playwright-core and opens the workbench with the `payload` query
 *      parameter (a JSON array of [key, value] pairs, read by VS Code's web environment service)
 *      carrying extensionDevelopmentPath / extensionTestsPath as vscode-remote:// URIs, so the
 *      extension and its tests run in code-server's Node extension host;
 *   3. exits with the code the workbench hands to `window.codeAutomationExit(code)` when the tests
 *      finish, forwarding the extension host's output to stdout;
 *   4. on failure or timeout saves a screenshot (and the workbench logs) under the output dir;
 *   5. always kills code-server (its whole process group) and Chromium.
 *
 * Env (see also code-server.js):
 *   AGENT_VAULT_VSCODE_TIMEOUT   hard timeout in seconds (default 600)
 *   AGENT_VAULT_TEST_OUTPUT      where failure screenshots/logs go (default .test-output/extension)
 *   AGENT_VAULT_VSCODE_VERBOSE=1 also print code-server's own log and the workbench console
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const cs = require('./code-server.js');

const TIMEOUT_S = Number(process.env.AGENT_VAULT_VSCODE_TIMEOUT || 600);
const OUTPUT_DIR = process.env.AGENT_VAULT_TEST_OUTPUT || path.join(cs.REPO_ROOT, '.test-output', 'extension');
const VERBOSE = process.env.AGENT_VAULT_VSCODE_VERBOSE === '1';

const log = (msg) => process.stdout.write(`[code-server-launcher] ${msg}\n`);
const logErr = (msg) => process.stderr.write(`[code-server-launcher] ${msg}\n`);

/** VS Code CLI options that take a value (as `--name value` or `--name=value`). */
const VALUE_OPTIONS = new Set(['extensionDevelopmentPath', 'extensionTestsPath', 'extensionDevelopmentKind', 'user-data-dir', 'extensions-dir', 'locale', 'log', 'logsPath']);

/** Parse the VS Code CLI arguments @vscode/test-electron passes (unknown flags are ignored). */
function parseArgs(argv) {
  const opts = { devPaths: [], testsPath: undefined, userDataDir: undefined, extensionsDir: undefined };
  const flags = new Set();
  const positionals = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let value;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (VALUE_OPTIONS.has(name) && i + 1 < argv.length) value = argv[++i];
    switch (name) {
      case 'extensionDevelopmentPath':
        opts.devPaths.push(path.resolve(value));
        break;
      case 'extensionTestsPath':
        opts.testsPath = path.resolve(value);
        break;
      case 'user-data-dir':
        opts.userDataDir = path.resolve(value);
        break;
      case 'extensions-dir':
        opts.extensionsDir = path.resolve(value);
        break;
      case 'locale':
        opts.locale = value;
        break;
      default:
        if (value === undefined) flags.add(name);
    }
  }
  if (positionals.length > 1) throw new Error(`expected at most one workspace folder, got: ${positionals.join(' ')}`);
  opts.folder = positionals.length ? path.resolve(positionals[0]) : undefined;
  opts.disableExtensions = flags.has('disable-extensions');
  return opts;
}

function forwardServerLine(line, stream) {
  if (VERBOSE) (stream === 'stderr' ? process.stderr : process.stdout).write(`[code-server] ${line}\n`);
}

/*
 * How the extension host's output reaches us: when tests run from the CLI, the workbench logs every
 * extension host console message through its log service, whose console logger calls
 * window.codeAutomationLog(type, args). The workbench's own log lines take the same route, so the
 * in-host runner (test/extension/suite/index.ts) prefixes mocha's reporter output with LOG_MARK
 * (passed via env, which code-server hands down to the extension host) and brackets the run with
 * marked start/end lines. We print the marked lines, everything logged between start and end, and
 * the workbench's errors; the rest only in verbose mode.
 */
const LOG_MARK = '\u2063av-host\u2063';

function formatLogArgs(args) {
  return util.format(...(Array.isArray(args) ? args : [args]));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  cs.checkTools();
  if (opts.devPaths.length > 1) throw new Error('the web workbench supports one --extensionDevelopmentPath');
  const sandbox = cs.createSandbox({
    userDataDir: opts.userDataDir,
    extensionsDir: opts.extensionsDir,
    env: { AGENT_VAULT_LOG_MARK: LOG_MARK },
  });

  let server;
  let browser;
  let page;
  let exitCode = 1;
  let finished = false;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const finish = (code, reason) => {
    if (finished) return;
    finished = true;
    exitCode = code;
    if (reason) logErr(reason);
    resolveDone();
  };

  const timer = setTimeout(() => finish(1, `timed out after ${TIMEOUT_S}s`), TIMEOUT_S * 1000);
  const onSignal = (sig) => finish(sig === 'SIGINT' ? 130 : 143, `received ${sig}`);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let workbenchLogs;
  // Everything that starts something checks `finished` afterwards, so a timeout or signal that
  // arrives while we start up still gets every process stopped in `finally`.
  const setup = async () => {
    const started = Date.now();
    const s = await cs.startCodeServer(sandbox, {
      locale: opts.locale,
      onLine: forwardServerLine,
      onSpawn: (proc) => {
        server = proc;
        proc.on('exit', (code, signal) => finish(1, `code-server exited unexpectedly (code ${code}, signal ${signal})`));
      },
    });
    const authority = s.authority;
    log(`code-server listening on ${s.origin}/ (${Date.now() - started} ms)`);
    if (finished) return;

    const b = await cs.launchChromium();
    if (finished) return void (await b.close().catch(() => undefined));
    browser = b;
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await context.newPage();

    await page.exposeFunction('codeAutomationExit', async (code, logs) => {
      workbenchLogs = logs;
      finish(typeof code === 'number' ? code : 1, code === 0 ? undefined : `tests failed (exit code ${code})`);
    });
    let inTestRun = false;
    await page.exposeFunction('codeAutomationLog', (type, args) => {
      const text = formatLogArgs(args);
      const out = type === 'error' ? process.stderr : process.stdout;
      if (text.includes(LOG_MARK)) {
        const clean = text.split(LOG_MARK).join('');
        if (clean === 'av:tests-start') inTestRun = true;
        else if (clean === 'av:tests-end') inTestRun = false;
        else out.write(clean + '\n');
      } else if (inTestRun) {
        out.write(text + '\n'); // what the tests and the extension log while the tests run
      } else if (type === 'error') {
        process.stderr.write(`[workbench] ${text}\n`);
      } else if (VERBOSE) {
        process.stdout.write(`[workbench:${type}] ${text}\n`);
      }
    });
    page.on('console', (msg) => {
      if (VERBOSE) process.stdout.write(`[page:${msg.type()}] ${msg.text()}\n`);
    });
    page.on('pageerror', (err) => {
      if (VERBOSE) logErr(`page error: ${err.message}`);
    });
    page.on('crash', () => finish(1, 'the workbench page crashed'));

    const remote = (p) => `vscode-remote://${authority}${p.split(path.sep).join('/')}`;
    const payload = [
      ['skipWelcome', 'true'],
      ['skipReleaseNotes', 'true'],
    ];
    if (opts.devPaths[0]) payload.push(['extensionDevelopmentPath', remote(opts.devPaths[0])]);
    if (opts.testsPath) payload.push(['extensionTestsPath', remote(opts.testsPath)]);
    if (opts.disableExtensions) payload.push(['disableExtensions', 'true']);
    const query = new URLSearchParams();
    if (opts.folder) query.set('folder', opts.folder);
    else query.set('ew', 'true');
    query.set('payload', JSON.stringify(payload));
    log(`opening workbench${opts.folder ? ` on ${opts.folder}` : ''}`);
    await page.goto(`${s.origin}/?${query.toString()}`, { waitUntil: 'domcontentloaded' });
    if (!opts.testsPath) log('no --extensionTestsPath given: waiting until timeout or a signal');
  };
  try {
    await Promise.race([setup(), done]);
    await done;
  } catch (err) {
    finish(1, `error: ${err && err.stack ? err.stack : err}`);
  } finally {
    clearTimeout(timer);
    if (exitCode !== 0) await saveFailureArtifacts(page, workbenchLogs);
    if (browser) await browser.close().catch(() => undefined);
    if (server) {
      server.removeAllListeners('exit');
      await cs.killGroup(server);
    }
    sandbox.cleanup();
  }
  return exitCode;
}

async function saveFailureArtifacts(page, logs) {
  try {
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    if (page && !page.isClosed()) {
      const shot = path.join(OUTPUT_DIR, `failure-${stamp}.png`);
      await page.screenshot({ path: shot, timeout: 15000 });
      logErr(`screenshot: ${path.relative(process.cwd(), shot)}`);
    }
    if (Array.isArray(logs) && logs.length) {
      const dir = path.join(OUTPUT_DIR, `logs-${stamp}`);
      for (const entry of logs) {
        if (!entry || typeof entry.relativePath !== 'string') continue;
        const target = path.join(dir, entry.relativePath.replace(/^(\.\.(\/|\\|$))+/, ''));
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, entry.contents);
      }
      logErr(`workbench logs: ${path.relative(process.cwd(), dir)}`);
    }
  } catch (err) {
    logErr(`could not save failure artifacts: ${err && err.message}`);
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    logErr(`error: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
