/*
 * Runs the extension test suite (test/extension/suite, bundled to out/test/extension/suite/index.js by
 * `node scripts/build.mjs --tests`) inside a real VS Code's extension host.
 *
 * The call is the ordinary @vscode/test-electron one. Where a desktop VS Code exists, point
 * AGENT_VAULT_VSCODE_PATH at its executable; otherwise the executable is
 * test/extension/harness/code-server-launcher.js, which runs the same tests in code-server's Node
 * extension host driven by headless Chromium (provisioned by scripts/provision-vscode.sh).
 */
import { runTests } from '@vscode/test-electron';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ENV_NAME, startExtensionTestPg, type StartedPg } from './pg-setup';
import { startMoto, TEST_CREDS, type MotoServer } from '../helpers/moto';
import { S3_ENV_NAME } from './s3-env';

const repoRoot = path.resolve(__dirname, '..', '..');

async function main(): Promise<number> {
  const extensionDevelopmentPath = repoRoot;
  const extensionTestsPath = path.join(repoRoot, 'out', 'test', 'extension', 'suite', 'index.js');
  if (!fs.existsSync(extensionTestsPath)) {
    console.error(`missing ${path.relative(process.cwd(), extensionTestsPath)}: run \`node scripts/build.mjs --tests\` first`);
    return 1;
  }
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'extension.js'))) {
    console.error('missing dist/extension.js: run `node scripts/build.mjs` first');
    return 1;
  }

  const vscodeExecutablePath = process.env.AGENT_VAULT_VSCODE_PATH || path.join(repoRoot, 'test', 'extension', 'harness', 'code-server-launcher.js');

  // A fresh profile each run, so no state leaks between runs (or from a developer's own VS Code).
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'av-vscode-profile-'));
  const workspace = path.join(profile, 'workspace');
  fs.mkdirSync(workspace);
  const started = Date.now();
  // The real PostgreSQL the in-host tests export from and restore into (see ./pg-setup.ts).
  let pg: StartedPg | undefined;
  // The S3-compatible server (moto on 127.0.0.1) of the s3:// vault tests; credentials reach the
  // extension host only through the AWS environment, as they would a user's.
  let s3: MotoServer | undefined;
  try {
    pg = await startExtensionTestPg();
    console.log(`test PostgreSQL ready on ${pg.info.host}:${pg.info.port} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    s3 = await startMoto();
    console.log(`test S3 (moto) ready at ${s3.endpoint}`);
    await runTests({
      vscodeExecutablePath,
      extensionDevelopmentPath,
      extensionTestsPath,
      launchArgs: [
        workspace,
        '--disable-extensions', // only the extension under development runs
        `--user-data-dir=${path.join(profile, 'user-data')}`,
        `--extensions-dir=${path.join(profile, 'extensions')}`,
      ],
      extensionTestsEnv: {
        AGENT_VAULT_EXTENSION_TESTS: '1',
        [ENV_NAME]: JSON.stringify(pg.info),
        [S3_ENV_NAME]: JSON.stringify({ endpoint: s3.endpoint }),
        AWS_ACCESS_KEY_ID: TEST_CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: TEST_CREDS.secretAccessKey,
      },
    });
    console.log(`extension tests passed in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return 0;
  } catch (err) {
    console.error(`extension tests failed after ${((Date.now() - started) / 1000).toFixed(1)}s: ${(err as Error).message}`);
    return 1;
  } finally {
    await pg?.stop().catch((e) => console.error(`stopping the test PostgreSQL: ${(e as Error).message}`));
    await s3?.stop().catch((e) => console.error(`stopping moto: ${(e as Error).message}`));
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
