/**
 * The model of a restore's source (agent files of an archive or a plain agent file) and of its
 * plan (the ids every object gets in the target). Shared by the per-table modules (../tables/)
 * and the restore steps (./source.ts, ./plan.ts, ./write.ts).
 */
import type { ArchiveReader, ManifestAgent } from '../../format/archive';
import type { EntrySource } from '../../format/entry-stream';
import type { LettaDbInfo } from '../sql';
import type { Obj } from '../tables/common';
import type { RestorePlan } from './types';

export interface SrcObject {
  fileId: string;
  dbId: string | null;
  obj: Obj;
  extra: Obj;
}

export interface SrcAgent extends SrcObject {
  name: string | null;
  /** the document (archive entry) the agent is in, and its position in that document's agents */
  doc: number;
  slot: number;
  manifest: ManifestAgent | null;
  messageCount: number;
  inContext: string[];
  /** ids of messages other rows refer to: the in-context ids and the approval targets */
  refs: Set<string>;
  /** approval_request_id values that name a message of this agent */
  approvalRefs: Set<string>;
  archive: Obj | null;
  environment: Obj[];
  identities: Obj[];
  passages: number;
}

/** Raw messages (JSON objects), message k = bufs[k] bytes starts[k]..ends[k]. */
export interface RawMessages {
  length: number;
  bufs: Buffer[];
  starts: number[];
  ends: number[];
}

export interface SourceModel {
  path: string | null;
  kind: 'archive' | 'agent-file';
  format: string | null;
  revision: string | null;
  sourceKind: string | null;
  reader: ArchiveReader | null;
  streams: EntrySource | null;
  encrypted: boolean;
  /** secret values of an encrypted archive (secrets/ entries): manifest agent id → key → variable */
  secrets: Map<string, Map<string, Obj>>;
  agents: SrcAgent[];
  blocks: Map<string, SrcObject>;
  tools: Map<string, SrcObject>;
  sources: Map<string, SrcObject>;
  files: Map<string, SrcObject>;
  groups: Map<string, SrcObject>;
  mcp: Map<string, SrcObject>;
  /** names (or ids) of the skills over all documents, each once */
  skills: string[];
  /** file id → original db id, over all documents (agents of other slices included) */
  dbIds: Map<string, string>;
  /** file id → columns the .af has no field for (agent_vault.rows) */
  rows: Map<string, Obj>;
  /** The agent's messages in file order, in batches (streamed from an archive, never held whole). */
  messages(a: SrcAgent): AsyncGenerator<RawMessages>;
  close(): Promise<void>;
}

export interface Assign {
  agents: Map<string, string>; // agent file id → target id (restored agents)
  agentRef: Map<string, string>; // any agent file id → target id (restored, skipped-existing, present in target)
  copy: Set<string>; // agent file ids restored as copies
  keepIds: Set<string>; // agent file ids that keep their original id (messages etc. keep theirs too)
  blocks: Map<string, string>;
  linkedBlocks: Set<string>; // block file ids that map to an existing block (no insert)
  blockLabels: Map<string, string>; // target block id → label (for linked blocks)
  tools: Map<string, string>;
  toolInsert: Set<string>;
  toolUpdate: Set<string>;
  mcp: Map<string, string>;
  mcpInsert: Set<string>;
  sources: Map<string, string>;
  sourceInsert: Set<string>;
  /** new names of folders whose name was taken (Letta's import adds "_<8 hex>") */
  sourceNames: Map<string, string>;
  files: Map<string, string>;
  fileInsert: Set<string>;
  groups: Map<string, string>;
  groupInsert: Set<string>;
  identities: Map<string, string>; // identity db id → target id
  identityInsert: Set<string>;
  archives: Map<string, string>; // agent file id → target archive id
  archiveInsert: Set<string>; // agent file ids whose archive row is inserted (and passages written)
  archiveKeepsIds: Set<string>;
  envCarry: Map<string, Map<string, { value: string; value_enc: string | null }>>; // agent file id → key → value
}

export interface Planned {
  plan: RestorePlan;
  restored: SrcAgent[];
  assign: Assign;
  info: LettaDbInfo;
  org: string;
  user: string;
}
