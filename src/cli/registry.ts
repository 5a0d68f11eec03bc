/**
 * Commands of the other concerns (database, diff, qdrant, vault). Each module exports a
 * `register…Commands(program, ctx)`; this list is the one place that wires them in.
 */
import type { Command } from 'commander';
import type { CliContext } from './context';
import { registerDemoCommand } from './demo';
import { registerDiffCommands } from './diff';
import { registerLettaCommands } from './letta';
import { registerQdrantCommands } from './qdrant';
import { registerVaultCommands } from './vault';

export function registerExtraCommands(program: Command, ctx: CliContext): void {
  registerDiffCommands(program, ctx);
  registerLettaCommands(program, ctx);
  registerQdrantCommands(program, ctx);
  registerVaultCommands(program, ctx);
  registerDemoCommand(program, ctx);
}
