import type { ChildProcess } from 'node:child_process';
import type { Browser } from 'playwright-core';

export const REPO_ROOT: string;
export const CODE_SERVER_ENTRY: string;
export const CHROMIUM: string;
export const CHROMIUM_FLAGS: readonly string[];
export const USER_SETTINGS: Readonly<Record<string, unknown>>;

export interface Sandbox {
  root: string;
  home: string;
  userDataDir: string;
  extensionsDir: string;
  configFile: string;
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

export interface RunningCodeServer {
  proc: ChildProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** `127.0.0.1:<port>` (the workbench's remote authority) */
  authority: string;
}

export function checkTools(): void;
export function createSandbox(opts?: { userDataDir?: string; extensionsDir?: string; env?: NodeJS.ProcessEnv }): Sandbox;
export function installExtension(sandbox: Sandbox, vsixPath: string): Promise<string>;
export function startCodeServer(
  sandbox: Sandbox,
  opts?: {
    locale?: string;
    onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
    onSpawn?: (proc: ChildProcess) => void;
  },
): Promise<RunningCodeServer>;
export function killGroup(proc: ChildProcess | undefined): Promise<void>;
export function launchChromium(): Promise<Browser>;
