/**
 * The public types of an export (re-exported by ../export.ts).
 */
import type { ArchiveWriter, Manifest, ManifestAgent, ManifestInput } from '../../format/archive';
import type { ArchiveKey } from '../../format/crypto';
import type { SecretSource } from '../secrets';

export interface ExportSelect {
  ids?: string[];
  /** ids or names (each must match at least one agent) */
  refs?: string[];
  names?: string[];
  tags?: string[];
  all?: boolean;
}

export interface ExportProgress {
  phase: 'snapshot' | 'agent' | 'messages' | 'passages' | 'warning' | 'done';
  agentId?: string;
  name?: string | null;
  /** 1-based position of the agent and the number of agents */
  index?: number;
  total?: number;
  /** rows written so far for this agent in this phase */
  rows?: number;
  message?: string;
}

export interface ExportOptions {
  select: ExportSelect;
  /** Only agents of this organization (default: any). */
  organizationId?: string;
  /** Archive to write (with `writer`: only named in messages). */
  out: string;
  /**
   * Write into this writer instead of an archive file at `out` (a store vault's backup writes
   * straight into the store). `encrypted` on it stands for `encryption` (secrets entries); the
   * export finishes it, or aborts it on failure.
   */
  writer?: ArchiveWriter & { readonly encrypted?: boolean };
  /** Replace an existing file at `out`. */
  overwrite?: boolean;
  /** Awaited: a slow callback slows the export (tests use it to interleave writers). */
  onProgress?: (e: ExportProgress) => void | Promise<void>;
  /** Rows per cursor FETCH (default 1000 messages, 500 passages). */
  batchSize?: number;
  /** manifest.created_at and the .af created_at (default: now). */
  createdAt?: string;
  /** Read vectors the way pgvector < 0.7 needs (real[] slices instead of subvector); for tests. */
  legacyVectorPath?: boolean;
  /**
   * Write the archive encrypted with this key (docs/FORMAT.md §9): every entry is encrypted as it
   * is streamed (no plaintext file is ever written), and the agents' secret values go into
   * `secrets/<agent-id>.env.json` entries (unless `secrets: false`).
   */
  encryption?: { key: ArchiveKey };
  /** With `encryption`: include the secret values (default true). Without it they are always redacted. */
  secrets?: boolean;
  /**
   * The Letta server's LETTA_ENCRYPTION_KEY, to decrypt the `value_enc` of environment variables
   * (without it, `value_enc` is used only when it holds plain text; else the stored `value`).
   */
  lettaEncryptionKey?: string;
  /**
   * Called inside the export's snapshot transaction before an agent's vectors are written; the
   * returned observer sees every vector as it goes into the archive (the vault records its
   * probes this way).
   */
  onAgentVectors?: (ctx: AgentVectorsContext) => Promise<VectorObserver | null>;
  /**
   * Called for an agent whose entries the writer took from an earlier snapshot (ArchiveWriter
   * `reuse`) instead of the export writing them: onAgentVectors is not called for it.
   */
  onAgentReused?: (agent: ManifestAgent) => void | Promise<void>;
  /**
   * Goes into every agent's change key (./change-key.ts): what the caller derives from an agent's
   * data besides its entries (the vault's probe options), so that a change of it re-reads the agent.
   */
  changeKeyContext?: string;
  /**
   * Adds entries after the agents' (the writer is still open; the snapshot transaction has ended)
   * and returns manifest fields to set.
   */
  extraEntries?: (writer: ArchiveWriter, agents: ManifestAgent[]) => Promise<Partial<ManifestInput> | void>;
}

/** An agent's archival vectors, for an observer (ExportOptions.onAgentVectors). */
export interface AgentVectorsContext {
  agentId: string;
  archiveId: string;
  /** the true dimension (what the vectors entry holds) */
  dim: number;
  /** passages (each gets a vector row; one without an embedding a null) */
  count: number;
  /** manifest.created_at of the export */
  createdAt: string;
  /** ids of the agent's passages that have an embedding, in the order the vectors are written */
  embeddedIds(): Promise<string[]>;
  /** the embeddings of these passages at the true dimension, as the archive holds them */
  vectors(ids: string[]): Promise<Map<string, Float32Array>>;
}

export interface VectorObserver {
  /** a passage's vector (null: the passage has no embedding), in the order written */
  add(passageId: string, v: Float32Array | null): void;
  /** after the agent's last vector */
  end(): Promise<void> | void;
}

export interface ExportResult {
  path: string;
  manifest: Manifest;
  bytes: number;
  warnings: string[];
  /** environment variables whose values the archive holds (encrypted exports), 0 otherwise */
  secrets: number;
  /** which agents were taken from an earlier snapshot (ArchiveWriter `reuse`) and which were read */
  reuse: ExportReuse;
}

/** Agents taken unchanged from a parent snapshot vs read from the database (./change-key.ts). */
export interface ExportReuse {
  /** the parent snapshot's name (null: none) */
  parent: string | null;
  reused: number;
  exported: number;
  /** why no agent could be reused at all (null: reuse was tried) */
  off: string | null;
}

/** What a secrets entry holds (docs/FORMAT.md, "Entries"). */
export interface SecretsEntry {
  agent_id: string;
  variables: Array<{ id: string; key: string; value: string; value_enc: string | null; value_source: SecretSource; description: string | null; created_at: string | null; updated_at: string | null }>;
}
