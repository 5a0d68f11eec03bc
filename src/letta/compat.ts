/**
 * Which Letta schema revisions a restore writes without --force-schema (docs/RESTORE.md explains
 * how the list was made).
 *
 * Agent Vault writes the tables of alembic head `1c28e167b74f`. Reading every migration's
 * `upgrade()` from 297e8217e952 (chain position 158) to head (166), none adds, drops, retypes or
 * constrains a column of a table a restore writes (they touch steps, provider_traces,
 * conversations, non-unique indexes, and one data backfill of agents.hidden). The migration before
 * that range, 297e8217e952 itself, made `embedding_config` nullable on archives and
 * archival_passages, so older revisions differ in a written table and are not listed.
 */
import { LETTA_HEAD_REVISION } from './ddl';

export interface CompatibleRevision {
  revision: string;
  /** Position in Letta's linear alembic chain (0 = root 9a505cc7eca9). */
  position: number;
  /** What the migration changed (from its upgrade()). */
  change: string;
}

export const COMPATIBLE_REVISIONS: readonly CompatibleRevision[] = [
  { revision: '297e8217e952', position: 158, change: 'embedding_config nullable on archives/archival_passages/source_passages (the last change to a written table)' },
  { revision: '9275f62ad282', position: 159, change: 'provider_traces columns' },
  { revision: 'a1b2c3d4e5f8', position: 160, change: 'provider_trace_metadata table' },
  { revision: '3e54e2fa2f7e', position: 161, change: 'steps usage columns' },
  { revision: 'b2c3d4e5f6a8', position: 162, change: 'conversations.model / model_settings' },
  { revision: '45402909a46b', position: 163, change: 'non-unique indexes on messages' },
  { revision: '9fa274fb0b83', position: 164, change: 'data backfill: agents.hidden for role:subagent tags' },
  { revision: 'a08c972e781b', position: 165, change: 'non-unique index on agents' },
  { revision: LETTA_HEAD_REVISION, position: 166, change: 'conversations.last_message_at (head)' },
];

const SET = new Set(COMPATIBLE_REVISIONS.map((r) => r.revision));

export function isCompatibleRevision(rev: string | null | undefined): boolean {
  return typeof rev === 'string' && SET.has(rev);
}
