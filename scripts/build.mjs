// Bundles the VS Code extension and the CLI with esbuild.
//   node scripts/build.mjs          dist/extension.js (+ dist/cli.js when src/cli/main.ts exists)
//   node scripts/build.mjs --tests  also bundles the in-host extension test suite to
//                                   out/test/extension/suite/index.js
//   node scripts/build.mjs --cli-only  only dist/cli.js (+ its PGlite files)
import { build } from 'esbuild';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The first line of dist/cli.js (see the CLI build below). */
const CLI_SHEBANG = '#!/usr/bin/env -S node --max-semi-space-size=4';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const withTests = process.argv.includes('--tests');
const cliOnly = process.argv.includes('--cli-only');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  // Prefer packages' ESM entry: some (jsonc-parser) ship a UMD `main` that esbuild cannot follow.
  mainFields: ['module', 'main'],
  logLevel: 'warning',
  absWorkingDir: root,
};

/*
 * PGlite (embedded Postgres in WASM) loads pglite.wasm, pglite.data, initdb.wasm and pgvector's
 * vector.tar.gz from files next to its own module. Its ESM build finds them through
 * `import.meta.url`, which a CommonJS bundle does not have, so:
 *   - the CLI bundle takes PGlite's CommonJS build (it uses `__filename`, i.e. dist/cli.js) and the
 *     four files are copied into dist/ beside it;
 *   - the extension (which only talks to PostgreSQL servers) gets a stub instead of PGlite, which
 *     keeps ~15 MB of WASM out of the .vsix; using PGlite there fails with a clear error.
 */
const require = createRequire(import.meta.url);
const PGLITE_PACKAGES = /^@electric-sql\/pglite(-pgvector)?$/;

function pgliteCommonJs() {
  return {
    name: 'pglite-commonjs',
    setup(b) {
      b.onResolve({ filter: PGLITE_PACKAGES }, (args) => ({ path: require.resolve(args.path, { paths: [root] }) }));
    },
  };
}

function pgliteStub() {
  return {
    name: 'pglite-stub',
    setup(b) {
      b.onResolve({ filter: PGLITE_PACKAGES }, (args) => ({ path: args.path, namespace: 'pglite-stub' }));
      b.onLoad({ filter: /.*/, namespace: 'pglite-stub' }, () => ({
        contents: `const fail = () => { const { AgentVaultError } = require(${JSON.stringify(join(root, 'src/core/errors.ts'))}); throw new AgentVaultError('pglite-unavailable', 'the embedded PGlite database is not available in the VS Code extension; connect to a PostgreSQL server, or use the agent-vault CLI'); };
export class PGlite { constructor() { fail(); } static create() { fail(); } }
export const vector = { name: 'pgvector', setup: fail };`,
        loader: 'js',
        resolveDir: root,
      }));
    },
  };
}

function copyPgliteAssets() {
  const pgliteDir = dirname(require.resolve('@electric-sql/pglite', { paths: [root] }));
  const vectorDir = dirname(require.resolve('@electric-sql/pglite-pgvector', { paths: [root] }));
  mkdirSync(join(root, 'dist'), { recursive: true });
  for (const [dir, file] of [
    [pgliteDir, 'pglite.wasm'],
    [pgliteDir, 'pglite.data'],
    [pgliteDir, 'initdb.wasm'],
    [vectorDir, 'vector.tar.gz'],
  ]) {
    copyFileSync(join(dir, file), join(root, 'dist', file));
  }
}

const jobs = [];
if (!cliOnly) {
  jobs.push(
    build({
      ...common,
      entryPoints: ['src/extension/extension.ts'],
      outfile: 'dist/extension.js',
      external: ['vscode'],
      plugins: [pgliteStub()],
      // the .vsix ships this bundle alone (.vscodeignore): minified, names kept for readable
      // stack traces, the source map stays beside it (not packaged)
      minify: true,
      keepNames: true,
    }),
  );
}

if (existsSync(join(root, 'src/cli/main.ts'))) {
  copyPgliteAssets();
  jobs.push(
    build({
      ...common,
      entryPoints: ['src/cli/main.ts'],
      outfile: 'dist/cli.js',
      // Run as a program (the package's `agent-vault` bin), node gets a 4 MiB young-generation
      // semi-space (V8's default is 16 MiB): a store backup of the 200k-message bench database peaks
      // ~45 MB lower (bench/dedup.ts) for 5–10 % more CPU. `env -S` splits the arguments (coreutils,
      // BSD/macOS env; npm's Windows shims read it too).
      banner: { js: CLI_SHEBANG },
      plugins: [pgliteCommonJs()],
    }),
  );
}

if (withTests) {
  // The extension host loads plain JS: bundle the mocha runner and every suite file into one file.
  // Test files are found at build time (esbuild has no runtime glob), see test/extension/suite/index.ts.
  jobs.push(
    build({
      ...common,
      entryPoints: ['test/extension/suite/index.ts'],
      outfile: 'out/test/extension/suite/index.js',
      // mocha is resolved from node_modules at run time (it has worker/reporter files of its own).
      // vscode-textmate/vscode-oniguruma (grammar tests) load onig.wasm from their package folder.
      external: ['vscode', 'mocha', 'vscode-textmate', 'vscode-oniguruma'],
      plugins: [suiteFilesPlugin(), pgliteStub()],
    }),
  );
}

await Promise.all(jobs);
// dist/cli.js is a program: runnable as it is (npm makes the installed bin executable too)
if (existsSync(join(root, 'dist/cli.js'))) chmodSync(join(root, 'dist/cli.js'), 0o755);
const built = [...(cliOnly ? [] : ['dist/extension.js']), ...(existsSync(join(root, 'src/cli/main.ts')) ? ['dist/cli.js'] : []), ...(withTests ? ['out/test/extension/suite/index.js'] : [])];
console.log(`build: ${built.join(', ')}`);

/** Virtual module `suite-files` that imports every test/extension/suite/**\/*.test.ts in order. */
function suiteFilesPlugin() {
  return {
    name: 'suite-files',
    setup(b) {
      b.onResolve({ filter: /^suite-files$/ }, () => ({ path: 'suite-files', namespace: 'suite-files' }));
      b.onLoad({ filter: /.*/, namespace: 'suite-files' }, async () => {
        const { readdir } = await import('node:fs/promises');
        const dir = join(root, 'test/extension/suite');
        const files = (await readdir(dir, { recursive: true }))
          .filter((f) => f.endsWith('.test.ts'))
          .map((f) => f.split('\\').join('/'))
          .sort();
        const contents = files.map((f) => `registerFile(${JSON.stringify(f)}, () => require(${JSON.stringify('./' + f)}));`).join('\n');
        return {
          contents: `const files = []; function registerFile(name, load) { files.push({ name, load }); }\n${contents}\nmodule.exports = files;`,
          resolveDir: dir,
          loader: 'js',
        };
      });
    },
  };
}
