import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { strict as assert } from 'node:assert';
import { processContext, type CliContext } from '../../src/cli/context';
import { main } from '../../src/cli/main';
import { REPO_ROOT } from './paths';

export const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');
let built = false;

/** Builds the real CLI bundle once per test process, so tests exercise what users run. */
export function ensureCliBuilt(): void {
  if (built && existsSync(CLI)) return;
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'build.mjs'), '--cli-only'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build failed: ${r.stderr || r.stdout}`);
  built = true;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI in a real process (for what only a process shows: signals, exit of the bundle). */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): CliResult {
  ensureCliBuilt();
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    input: opts.input,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: opts.timeoutMs ?? 120000,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * The built CLI in a child process, asynchronously (the test process keeps serving its proxies):
 * `onStart` gets the child (to signal it), `onStderrLine` each line it prints to stderr.
 */
export function startCliProcess(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; onStart?: (p: ChildProcess) => void; onStderrLine?: (line: string, kill: () => void) => void } = {},
): Promise<ProcessResult> {
  ensureCliBuilt();
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr!.on('data', (c: Buffer) => {
      const text = c.toString();
      stderr += text;
      if (opts.onStderrLine) for (const line of text.split('\n')) if (line) opts.onStderrLine(line, () => p.kill('SIGKILL'));
    });
    p.once('error', reject);
    p.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    opts.onStart?.(p);
  });
}

export interface InProcessOptions {
  /** Added to the environment of this process (with `cleanEnv`: the whole environment). */
  env?: NodeJS.ProcessEnv;
  /** Start from an empty environment instead of this process's. */
  cleanEnv?: boolean;
  cwd?: string;
  /** Other parts of the context (a database opener, statfs, secrets). */
  context?: Partial<Omit<CliContext, 'stdout' | 'stderr' | 'env' | 'cwd'>>;
}

/**
 * Runs one command line in this process through `main(argv, ctx)`, with its output captured and
 * the environment given (nothing of this process is changed). Asserts that no stack trace is printed.
 */
export async function runCliInProcess(args: string[], opts: InProcessOptions = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const ctx: CliContext = {
    ...processContext(),
    stdoutIsTTY: false,
    ...opts.context,
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    env: opts.cleanEnv ? { ...opts.env } : { ...process.env, ...opts.env },
    cwd: opts.cwd ?? process.cwd(),
  };
  const code = await main(args, ctx);
  assert.doesNotMatch(stderr, STACK_TRACE, 'never a stack trace');
  return { code, stdout, stderr };
}

/** A stack trace printed to a user looks like this. */
export const STACK_TRACE = /^\s+at .+\(.+:\d+:\d+\)$|^\s+at .+:\d+:\d+$/m;
