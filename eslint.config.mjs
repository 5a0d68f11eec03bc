// ESLint (flat config) with typescript-eslint's recommended rules; formatting is Prettier's
// (.prettierrc.json), so no stylistic rules here. `npm run lint` runs both.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // *.wip.ts: kept work in progress, not run by npm test (see its header)
  { ignores: ['dist/**', 'node_modules/**', '.tools/**', '.vscode-test/**', 'out/**', '**/*.wip.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Agent files, manifests and SQL rows are untyped JSON the code walks on purpose; `any` there
      // is a decision, not a slip (strict TypeScript checks everything else).
      '@typescript-eslint/no-explicit-any': 'off',
      // a variable a closure reads before its one assignment (a child process a handler kills)
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `_`-prefixed names are deliberately unused (destructuring that drops a field, callbacks)
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  {
    // plain JavaScript helpers (CommonJS) of the test harness and build scripts
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        __dirname: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
  },
);
