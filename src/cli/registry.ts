/**
 * Commands of the other concerns (database, diff, qdrant, vault). Each module exports a
 * `register…Commands(program)`; this list is the one place that wires them in.
 */
import type { Command } from 'commander';
import { registerDiffCommands } from './diff';
import { registerQdrantCommands } from './qdrant';

export function registerExtraCommands(_program: Command): void {
  // wired in as each concern lands
  registerDiffCommands(_program);
  registerQdrantCommands(_program);
}
