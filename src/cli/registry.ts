/**
 * Commands of the other concerns (database, diff, qdrant, vault). Each module exports a
 * `register…Commands(program)`; this list is the one place that wires them in.
 */
import type { Command } from 'commander';
import { registerDemoCommand } from './demo';
import { registerDiffCommands } from './diff';
import { registerLettaCommands } from './letta';
import { registerQdrantCommands } from './qdrant';
import { registerVaultCommands } from './vault';

export function registerExtraCommands(program: Command): void {
  registerDiffCommands(program);
  registerLettaCommands(program);
  registerQdrantCommands(program);
  registerVaultCommands(program);
  registerDemoCommand(program);
}
