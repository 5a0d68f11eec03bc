/**
 * The public types of a restore (re-exported by ../restore.ts): options, the plan, the result.
 */
import type { ErrorKind, ErrorRemedy } from '../../core/errors';
import type { DecryptOptions } from '../../format/crypto';
import type { ArchiveReader } from '../../format/archive';
import type { AgentFileV1, AgentFileV2 } from '../../format/types';
import type { RestoreStep } from '../tables/index';

export type OnConflict = 'fail' | 'skip' | 'replace' | 'copy';
export type ToolsMode = 'keep' | 'replace';

export interface RestoreOptions {
  /** Agents to restore: original database ids, file-local ids (agent-0) or names. Default: all. */
  agents?: string[];
  onConflict?: OnConflict;
  tools?: ToolsMode;
  dryRun?: boolean;
  forceSchema?: boolean;
  allowEmbeddingMismatch?: boolean;
  /** Target organization / acting user (default: Letta's default org and user). */
  organizationId?: string;
  userId?: string;
  /** Appended to the name of a copy (default "_copy", like Letta's import). */
  nameSuffix?: string;
  /** Give every object a new id (what Letta's import does); conflicts are then by name. */
  newIds?: boolean;
  /** With newIds: do not treat an existing agent of the same name as a conflict (Letta's import allows duplicates). */
  allowDuplicateNames?: boolean;
  /**
   * For an agent file: give an agent without any in-context message the system message Letta's
   * create_agent writes (default true; seedAgentFile passes false to lay agents out exactly as
   * Letta's import does, which leaves them without).
   */
  initialSystemMessage?: boolean;
  /**
   * The passphrase or key of an encrypted archive (what openArchive takes). Without it an
   * encrypted archive is refused (error 'no-key', kind 'usage'); a wrong one is 'wrong-key' (kind 'failed').
   */
  decrypt?: DecryptOptions;
  /**
   * Write the secret values an encrypted archive carries (its `secrets/` entries) into
   * agent_environment_variables.value (default true). false: like a plain archive (redacted).
   */
  secrets?: boolean;
  /** Awaited before each table is written (tests pause here to break the connection). */
  onStep?: (step: RestoreStep) => void | Promise<void>;
  onProgress?: (e: { step: RestoreStep; rows: number }) => void | Promise<void>;
}

export type PlanAction = 'create' | 'rename' | 'skip' | 'replace' | 'conflict';

export interface PlanAgent {
  /** original database id when the source has one, else the file-local id */
  source_id: string;
  file_id: string;
  name: string | null;
  action: PlanAction;
  /** id and name the agent will have in the target (null when skipped / in conflict) */
  target_id: string | null;
  target_name: string | null;
  /** the target agent this one conflicts with */
  existing_id: string | null;
  conflict_by: 'id' | 'name' | null;
  counts: { messages: number; in_context_messages: number; blocks: number; tools: number; passages: number };
  /**
   * An agent file (interchange) gives the agent no in-context message (e.g. an .af of an agent
   * with no messages): the restore writes the system message Letta's create_agent writes (the
   * compiled system prompt) and makes it the agent's only in-context message; Letta refuses to
   * run an agent without one (../initial-message.ts). A snapshot of a database is restored as it
   * is (a warning names such an agent).
   */
  adds_system_message: boolean;
}

export interface PlanRefusal {
  code: 'conflict' | 'revision-mismatch' | 'embedding-mismatch';
  message: string;
  kind: ErrorKind;
  /** what lifts the refusal (the CLI names its flag) */
  remedy: ErrorRemedy;
}

export interface RestorePlan {
  source: {
    path: string | null;
    kind: 'archive' | 'agent-file';
    format: string | null;
    revision: string | null;
    source_kind: string | null;
    /** an encrypted archive (read with the key given) */
    encrypted: boolean;
    /** secret values (environment variables) the restore writes: only an encrypted archive has them */
    secret_values: number;
  };
  target: { database: string; schema: string; revision: string; organization_id: string; user_id: string };
  dry_run: boolean;
  agents: PlanAgent[];
  /** agent names per outcome (what the CLI prints first) */
  summary: { created: string[]; renamed: string[]; skipped: string[]; replaced: string[]; conflicts: string[] };
  tools: Array<{ name: string; action: 'create' | 'keep' | 'replace'; target_id: string }>;
  groups: Array<{ source_id: string; action: 'create' | 'link' | 'drop'; target_id: string | null }>;
  /** objects deleted before writing (replace) */
  deletes: { agents: string[]; groups: string[]; blocks: string[]; archives: string[] };
  guards: {
    /** interchange: the source is an agent file, upgraded on the way in; only the target's revision is checked */
    revision: { source: string | null; target: string; compatible: boolean; forced: boolean; interchange: boolean };
    embedding: Array<{ agent: string; model: string | null; dim: number | null; target: Array<{ model: string | null; dim: number | null }>; ok: boolean; forced: boolean }>;
  };
  /**
   * What the source holds that a round trip does not carry (issue 12: nothing dropped without a
   * word): skills are not written (Letta keeps no skills table this tool writes); blocks and tools
   * that no restored agent, group or identity attaches are written as free-standing rows, which an
   * export of the agents does not contain.
   */
  not_carried: {
    skills: { count: number; names: string[] };
    unattached_blocks: { count: number; labels: string[] };
    unattached_tools: { count: number; names: string[] };
  };
  warnings: string[];
  /** reasons the restore would be refused (empty = it would run) */
  refusals: PlanRefusal[];
}

export interface RestoreResult {
  plan: RestorePlan;
  /** source agent (source_id) → target agent id, for the agents written */
  agentIds: Record<string, string>;
  /** rows written per table */
  rows: Partial<Record<RestoreStep, number>>;
}

/**
 * A path (snapshot archive or agent file), an agent file document in memory, or a way to open an
 * archive reader (a snapshot of the vault's store is read in place this way:
 * src/vault/store/reader.ts), which the restore calls once and closes when it is done.
 */
export type RestoreSource = string | { doc: AgentFileV2 | AgentFileV1; name?: string } | { open: () => Promise<ArchiveReader> };
