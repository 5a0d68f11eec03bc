/*
 * Shared helpers to run code-server (VS Code's web build, installed by scripts/provision-vscode.sh
 * into .tools/code-server/) and Debian's Chromium for the extension tests and the e2e smoke.
 * Plain CommonJS so code-server-launcher.js runs with bare `node`; types in code-server.d.ts.
 *
 * Env:
 *   AGENT_VAULT_CODE_SERVER  path to code-server's out/node/entry.js (default: code-server/ in
 *                            AGENT_VAULT_TOOLS_DIR, the tools dir scripts/provision-vscode.sh uses, else .tools/)
 *   AGENT_VAULT_CHROMIUM     Chromium binary (default /usr/bin/chromium)
 */
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const CODE_SERVER_ENTRY =
  process.env.AGENT_VAULT_CODE_SERVER || path.join(process.env.AGENT_VAULT_TOOLS_DIR || path.join(REPO_ROOT, '.tools'), 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const CHROMIUM = process.env.AGENT_VAULT_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Settings for a fresh profile: no telemetry, no welcome page, no trust prompt, no update checks. */
const USER_SETTINGS = {
  'telemetry.telemetryLevel': 'off',
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'security.workspace.trust.enabled': false,
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
};

function checkTools() {
  if (!fs.existsSync(CODE_SERVER_ENTRY)) {
    throw new Error(`code-server not found at ${CODE_SERVER_ENTRY}; run scripts/provision-vscode.sh`);
  }
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}; run scripts/provision-vscode.sh`);
}

/**
 * A temp root with an isolated HOME, user-data-dir and extensions-dir (any of them may be given),
 * the env to run code-server with, and cleanup().
 */
function createSandbox(opts = {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'av-code-server-'));
  const home = path.join(root, 'home');
  const userDataDir = opts.userDataDir || path.join(root, 'user-data');
  const extensionsDir = opts.extensionsDir || path.join(root, 'extensions');
  for (const d of [home, userDataDir, extensionsDir]) fs.mkdirSync(d, { recursive: true });
  const settings = path.join(userDataDir, 'User', 'settings.json');
  if (!fs.existsSync(settings)) {
    fs.mkdirSync(path.dirname(settings), { recursive: true });
    fs.writeFileSync(settings, JSON.stringify(USER_SETTINGS, null, 2) + '\n');
  }
  const env = {
    ...process.env,
    ...(opts.env || {}),
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    EXTENSIONS_GALLERY: '{"serviceUrl":""}',
  };
  // Never leak a parent VS Code's IPC hooks into the server we start.
  for (const k of Object.keys(env)) if (k.startsWith('VSCODE_')) delete env[k];
  // Our own config file, so code-server never writes a generated password anywhere.
  const configFile = path.join(root, 'code-server.yaml');
  fs.writeFileSync(configFile, 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n');
  return {
    root,
    home,
    userDataDir,
    extensionsDir,
    configFile,
    env,
    cleanup: () => fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 }),
  };
}

function baseArgs(sandbox) {
  return [CODE_SERVER_ENTRY, '--config', sandbox.configFile, '--disable-telemetry', '--disable-update-check', '--user-data-dir', sandbox.userDataDir, '--extensions-dir', sandbox.extensionsDir];
}

/** `code-server --install-extension <vsix>` into the sandbox's extensions-dir. */
function installExtension(sandbox, vsixPath) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...baseArgs(sandbox), '--force', '--install-extension', vsixPath], {
      env: sandbox.env,
      cwd: sandbox.root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code === 0 && /successfully installed/i.test(out)) resolve(out.trim());
      else reject(new Error(`code-server --install-extension ${vsixPath} failed (exit ${code}):\n${out}`));
    });
  });
}

/**
 * Start code-server on a free loopback port. Resolves with { proc, port, origin } once it listens.
 * `onLine(line, stream)` receives every line it prints; `onSpawn(proc)` gets the process at once
 * (so a caller's timeout can kill it while it starts). It runs in its own process group, so
 * killGroup(proc) takes its extension host and pty host down with it.
 */
function startCodeServer(sandbox, opts = {}) {
  const args = [...baseArgs(sandbox), '--bind-addr', '127.0.0.1:0', '--auth', 'none', '--disable-workspace-trust', '--disable-getting-started-override', '--ignore-last-opened'];
  if (opts.locale) args.push('--locale', opts.locale);
  const proc = spawn(process.execPath, args, {
    env: sandbox.env,
    cwd: sandbox.root,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (opts.onSpawn) opts.onSpawn(proc);
  const onLine = opts.onLine || (() => undefined);
  return new Promise((resolve, reject) => {
    let settled = false;
    let early = '';
    for (const [stream, name] of [
      [proc.stdout, 'stdout'],
      [proc.stderr, 'stderr'],
    ]) {
      let rest = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        rest += chunk;
        const lines = rest.split('\n');
        rest = lines.pop();
        for (const line of lines) {
          if (!settled) {
            early += line + '\n';
            const m = /HTTP server listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
            if (m) {
              settled = true;
              const port = Number(m[1]);
              resolve({ proc, port, origin: `http://127.0.0.1:${port}`, authority: `127.0.0.1:${port}` });
            }
          }
          onLine(line, name);
        }
      });
    }
    proc.on('exit', (code, signal) => {
      if (!settled) {
        settled = true;
        reject(new Error(`code-server exited before listening (code ${code}, signal ${signal}):\n${early}`));
      }
    });
    proc.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
  });
}

/** SIGTERM the process group, SIGKILL after 5 s. */
function killGroup(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    let hard;
    const done = () => {
      clearTimeout(hard);
      resolve();
    };
    proc.once('exit', done);
    try {
      process.kill(-proc.pid, 'SIGTERM');
    } catch {
      return done();
    }
    hard = setTimeout(() => {
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      resolve();
    }, 5000);
  });
}

/** Headless Debian Chromium through playwright-core. */
function launchChromium() {
  const { chromium } = require('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}

module.exports = {
  REPO_ROOT,
  CODE_SERVER_ENTRY,
  CHROMIUM,
  CHROMIUM_FLAGS,
  USER_SETTINGS,
  checkTools,
  createSandbox,
  installExtension,
  startCodeServer,
  killGroup,
  launchChromium,
};
