/**
 * The Letta tables Agent Vault maps, one module per table or per family of tables written together
 * (./<table>.ts: columns, row → .af, .af → row). The restore steps are derived from here: the
 * writers run in the foreign-key order of LETTA_TABLES (../ddl.ts, the one place that order is
 * written), after the deletions of a replace.
 */
import { LETTA_TABLES, type LettaTable } from '../ddl';
import { agentsWriter, AGENT_EXTRA_COLUMNS } from './agents';
import { archivesWriter } from './archives';
import { blockWriter, BLOCK_EXTRA_COLUMNS } from './block';
import type { TableWriter } from './common';
import { environmentWriter } from './environment';
import { filesAgentsWriter, filesWriter, FILES_AGENTS_EXTRA_COLUMNS, FILE_EXTRA_COLUMNS } from './files';
import { groupsWriter, GROUP_EXTRA_COLUMNS } from './groups';
import { identitiesAgentsWriter, identitiesBlocksWriter, identitiesWriter } from './identities';
import { agentsTagsWriter, blocksAgentsWriter, sourcesAgentsWriter, toolsAgentsWriter } from './links';
import { mcpServerWriter, MCP_SERVER_EXTRA_COLUMNS } from './mcp-server';
import { messagesWriter } from './messages';
import { passagesWriter } from './passages';
import { sourcePassagesWriter } from './source-passages';
import { sourcesWriter, SOURCE_EXTRA_COLUMNS } from './sources';
import { toolsWriter, TOOL_EXTRA_COLUMNS } from './tools';

const WRITERS = [
  toolsWriter,
  mcpServerWriter,
  sourcesWriter,
  blockWriter,
  identitiesWriter,
  agentsWriter,
  filesWriter,
  sourcePassagesWriter,
  messagesWriter,
  blocksAgentsWriter,
  toolsAgentsWriter,
  sourcesAgentsWriter,
  agentsTagsWriter,
  identitiesAgentsWriter,
  identitiesBlocksWriter,
  filesAgentsWriter,
  environmentWriter,
  groupsWriter,
  archivesWriter,
  passagesWriter,
] as const;

/** A table a restore writes. */
export type WrittenTable = (typeof WRITERS)[number]['tables'][number];

/** The tables a restore writes, in LETTA_TABLES order. */
export const WRITTEN_TABLES: readonly WrittenTable[] = LETTA_TABLES.filter((t): t is WrittenTable => WRITERS.some((w) => (w.tables as readonly LettaTable[]).includes(t)));

/** The steps of a restore, in the order it takes them (each one is an `onStep` step): deletions, then the tables. */
export const RESTORE_STEPS: readonly RestoreStep[] = ['delete', ...WRITTEN_TABLES];
export type RestoreStep = 'delete' | WrittenTable;

/** The writers in the order they run: by the position of their tables in LETTA_TABLES (a family's tables are consecutive there). */
export const TABLE_WRITERS: readonly TableWriter[] = orderWriters();

function orderWriters(): TableWriter[] {
  const pos = (t: LettaTable) => WRITTEN_TABLES.indexOf(t as WrittenTable);
  for (const w of WRITERS) {
    w.tables.forEach((t, i) => {
      if (pos(t) !== pos(w.tables[0]) + i) throw new Error(`letta/tables: the tables ${w.tables.join(', ')} written together are not consecutive in LETTA_TABLES`);
    });
  }
  return [...WRITERS].sort((x, y) => pos(x.tables[0]) - pos(y.tables[0]));
}

/** Columns per table that Letta's .af has no field for (the export keeps them in agent_vault.rows). */
export const EXTRA_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  agents: AGENT_EXTRA_COLUMNS,
  block: BLOCK_EXTRA_COLUMNS,
  tools: TOOL_EXTRA_COLUMNS,
  sources: SOURCE_EXTRA_COLUMNS,
  files: FILE_EXTRA_COLUMNS,
  files_agents: FILES_AGENTS_EXTRA_COLUMNS,
  groups: GROUP_EXTRA_COLUMNS,
  mcp_server: MCP_SERVER_EXTRA_COLUMNS,
};
