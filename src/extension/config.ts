/**
 * The extension's settings (package.json `contributes.configuration`), typed, in one place: every
 * read goes through here. Defaults are package.json's alone: VS Code returns the contributed default
 * for a setting the user has not set, so none is repeated in code (as rust-analyzer's editors/code
 * config.ts does).
 */
import * as vscode from 'vscode';
import type { OnConflict, ToolsMode } from '../letta/restore';
import type { StatusPolicy } from '../vault/config';
import type { RetentionPolicy } from '../vault/retention';

export const CONFIG_SECTION = 'agentVault';

/** Every setting, by its key under `agentVault.`, with the type package.json declares. */
export interface Settings {
  vaultPath: string;
  configFile: string;
  connections: unknown[];
  encryptSnapshots: boolean;
  'restore.onConflict': OnConflict;
  'restore.tools': ToolsMode;
  'status.maxAgeHours': number;
  'status.drillMaxAgeDays': number;
  retention: RetentionPolicy;
  'drill.connection': string;
  'validation.enabled': boolean;
  'diff.openFirstChange': boolean;
}

function section(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(CONFIG_SECTION);
}

/** A setting's value: the user's, else the default package.json contributes. */
export function setting<K extends keyof Settings>(key: K): Settings[K] {
  return section().get<Settings[K]>(key) as Settings[K];
}

/** A text setting; an empty value counts as unset (the contributed default). */
export function textSetting(key: 'vaultPath' | 'configFile'): string {
  return setting(key) || (section().inspect<string>(key)?.defaultValue ?? '');
}

/** Writes a setting (the workspace's when a folder is open, else the user's). */
export async function updateSetting<K extends keyof Settings>(key: K, value: Settings[K] | undefined): Promise<void> {
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await section().update(key, value, target);
}

/** Whether a configuration change touches this setting (or a group of them, e.g. 'status'). */
export function affects(e: vscode.ConfigurationChangeEvent, key: keyof Settings | 'status' | 'restore'): boolean {
  return e.affectsConfiguration(`${CONFIG_SECTION}.${key}`);
}

/** The status policy (the same rules as `agent-vault status`). */
export function statusPolicy(): StatusPolicy {
  return { maxAgeHours: setting('status.maxAgeHours'), drillMaxAgeDays: setting('status.drillMaxAgeDays') };
}
