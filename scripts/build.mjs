// Bundles the VS Code extension and the CLI with esbuild.
//   node scripts/build.mjs          dist/extension.js (+ dist/cli.js when src/cli/main.ts exists)
//   node scripts/build.mjs --tests  also bundles the in-host extension test suite to
//                                   out/test/extension/suite/index.js
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const withTests = process.argv.includes('--tests');

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

const jobs = [
  build({
    ...common,
    entryPoints: ['src/extension/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
  }),
];

if (existsSync(join(root, 'src/cli/main.ts'))) {
  jobs.push(
    build({
      ...common,
      entryPoints: ['src/cli/main.ts'],
      outfile: 'dist/cli.js',
      banner: { js: '#!/usr/bin/env node' },
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
      external: ['vscode', 'mocha'],
      plugins: [suiteFilesPlugin()],
    }),
  );
}

await Promise.all(jobs);
console.log(`build: dist/extension.js${jobs.length > 1 && existsSync(join(root, 'src/cli/main.ts')) ? ', dist/cli.js' : ''}${withTests ? ', out/test/extension/suite/index.js' : ''}`);

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
        const contents = files
          .map((f) => `registerFile(${JSON.stringify(f)}, () => require(${JSON.stringify('./' + f)}));`)
          .join('\n');
        return {
          contents: `const files = []; function registerFile(name, load) { files.push({ name, load }); }\n${contents}\nmodule.exports = files;`,
          resolveDir: dir,
          loader: 'js',
        };
      });
    },
  };
}
