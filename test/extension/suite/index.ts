/*
 * In-host mocha runner: VS Code loads this module in the extension host (from
 * out/test/extension/suite/index.js, bundled by `node scripts/build.mjs --tests`) and calls run().
 * The suite files are bundled in (see the `suite-files` virtual module in scripts/build.mjs),
 * because the extension host loads plain JS; mocha itself is resolved from node_modules.
 */
import { appendFileSync } from 'node:fs';
import Mocha from 'mocha';
import files from 'suite-files';

/*
 * Under test/extension/harness/code-server-launcher.js the extension host's console reaches the
 * launcher mixed with the workbench's own log. The launcher passes a marker: we prefix mocha's
 * reporter output with it and bracket the run with start/end lines, so the launcher can print the
 * reporter and everything the tests log in between, and drop the workbench's chatter.
 * (The extension host's `console` cannot be wrapped: VS Code defines its methods non-writable.)
 * Without the marker (desktop VS Code) output is left alone.
 */
const LOG_MARK = process.env.AGENT_VAULT_LOG_MARK;

function hostLog(line: string): void {
  if (LOG_MARK) console.log(LOG_MARK + line);
}

function markReporterOutput(): void {
  if (!LOG_MARK) return;
  const base = Mocha.reporters.Base as unknown as { consoleLog: (...args: unknown[]) => void };
  const original = base.consoleLog;
  base.consoleLog = (first?: unknown, ...rest: unknown[]): void =>
    typeof first === 'string' ? original(LOG_MARK + first, ...rest) : original(LOG_MARK, ...(first === undefined ? rest : [first, ...rest]));
}

export function run(): Promise<void> {
  markReporterOutput();
  const mocha = new Mocha({
    ui: 'bdd',
    reporter: 'spec',
    color: false,
    timeout: Number(process.env.AGENT_VAULT_EXTENSION_TEST_TIMEOUT ?? 30000),
  });
  const grep = process.env.AGENT_VAULT_EXTENSION_TEST_GREP;
  if (grep) mocha.grep(grep);

  // What Mocha#loadFiles does for files on disk, done for the bundled modules.
  const { EVENT_FILE_PRE_REQUIRE, EVENT_FILE_REQUIRE, EVENT_FILE_POST_REQUIRE } = Mocha.Suite.constants;
  for (const file of files) {
    const name = `test/extension/suite/${file.name}`;
    mocha.suite.emit(EVENT_FILE_PRE_REQUIRE, globalThis, name, mocha);
    mocha.suite.emit(EVENT_FILE_REQUIRE, file.load(), name, mocha);
    mocha.suite.emit(EVENT_FILE_POST_REQUIRE, globalThis, name, mocha);
  }

  return new Promise<void>((resolve, reject) => {
    hostLog('av:tests-start');
    try {
      const runner = mocha.run((failures) => {
        closingLine(runner.stats);
        if (failures > 0) reject(new Error(`${failures} extension test(s) failed`));
        else resolve();
      });
    } catch (err) {
      reject(err);
    }
  }).finally(() => hostLog('av:tests-end'));
}

/**
 * The closing line CI reads (`<suite>: N passed, N failed[, N skipped]`, as test/helpers/summary-reporter.js
 * prints for the other suites), and the same counts appended to AGENT_VAULT_COUNTS_FILE when set.
 */
function closingLine(stats: Mocha.Stats | undefined): void {
  const label = process.env.AGENT_VAULT_SUITE || 'extension';
  const passed = stats?.passes ?? 0;
  const failed = stats?.failures ?? 0;
  const skipped = stats?.pending ?? 0;
  const line = `${label}: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
  if (LOG_MARK) hostLog(line);
  else console.log(line);
  if (process.env.AGENT_VAULT_COUNTS_FILE) {
    appendFileSync(process.env.AGENT_VAULT_COUNTS_FILE, JSON.stringify({ label, passed, failed, skipped }) + '\n');
  }
}
