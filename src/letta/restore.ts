/**
 * Restore of Letta agents into a running Letta database, from a snapshot archive (written by
 * `exportAgents` or `pack`) or from a plain agent file (.af v1 — upgraded —, v2, double-encoded
 * v2). docs/RESTORE.md is the user-facing description; the rules in short:
 *
 * - Checksums of an archive are verified BEFORE the transaction opens (a damaged archive changes
 *   nothing); the same pass keeps each agent file without its messages and checks the messages.
 *   Then ONE transaction: the plan is computed from the target as it is inside that transaction,
 *   the guards run, and every table is written in an order that satisfies every foreign key:
 *   small tables with set-based inserts, messages / passages / passage tags with COPY, streamed
 *   from the archive in batches (no agent file is held whole; ./copy.ts, ./tables/messages.ts, ./tables/passages.ts). Any failure
 *   rolls everything back.
 * - Encrypted archives are read with the key given (`decrypt`); their secret values
 *   (`secrets/` entries) are written into agent_environment_variables.value (value_enc NULL).
 * - Conflict: an agent of the source whose original database id exists in the target; for
 *   sources without database ids (plain .af files, packed archives) or when new ids are asked
 *   for, an agent of the target organization with the same name. `onConflict` decides:
 *   fail (refuse the whole restore), skip (leave the existing agent), replace (delete it and
 *   what only it owned, then restore), copy (restore beside it with new ids and a name suffix).
 * - Ids: original ids are kept where they are free; new `<prefix>-<uuid4>` ids where they are
 *   not (or for copies), with every reference rewritten (message_ids, block links, group
 *   agent_ids, file links, approval ids).
 * - Tools are shared by name within an organization: an existing tool of the same name is used
 *   as is (`tools: 'keep'`) or overwritten with the archived definition (`'replace'`).
 * - Guards: the target's Letta revision and the source's must be equal or both in the
 *   compatible list (./compat.ts), unless `forceSchema`; archival passages whose embedding model
 *   or dimension is not among the target's existing passages/archives are refused unless
 *   `allowEmbeddingMismatch`. Both messages name both sides.
 */
import { AgentVaultError } from '../core/errors';
import type { Db } from '../db/types';
import { computePlan } from './restore/plan';
import { openSource } from './restore/source';
import type { RestoreOptions, RestorePlan, RestoreResult, RestoreSource } from './restore/types';
import { writeAll } from './restore/write';
import { describeDb, type ColumnInfo } from './sql';

export type { OnConflict, ToolsMode, RestoreOptions, PlanAction, PlanAgent, PlanRefusal, RestorePlan, RestoreResult, RestoreSource } from './restore/types';
export { RESTORE_STEPS, type RestoreStep } from './tables/index';
export { formatPlan } from './restore/plan-text';

/** The plan of a restore, without changing anything (a read-only transaction). */
export async function planRestore(db: Db, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestorePlan> {
  const model = await openSource(source, opts.decrypt);
  try {
    return await db.transaction(async (tx) => (await computePlan(tx, model, { ...opts, dryRun: true }, describeDb(db))).plan, { isolation: 'repeatable read', readOnly: true });
  } finally {
    await model.close();
  }
}

/**
 * Restores the agents of `source` into `db` in one transaction (see the module comment). With
 * `dryRun`, returns the plan and changes nothing. Throws AgentVaultError when the plan has a
 * refusal (an agent exists: kind 'conflict'; revision or embedding mismatch: 'mismatch') or a
 * write fails (kind 'rolledBack': the transaction is rolled back).
 */
export async function restoreAgents(db: Db, source: RestoreSource, opts: RestoreOptions = {}): Promise<RestoreResult> {
  // archive checksums are verified here, before any transaction; a snapshot of the vault's store
  // has its passages entries checked as the transaction writes them (a damage rolls it back)
  const model = await openSource(source, opts.decrypt, { checkPassagesOnWrite: !opts.dryRun });
  const where = describeDb(db);
  try {
    if (opts.dryRun) {
      const plan = await db.transaction(async (tx) => (await computePlan(tx, model, opts, where)).plan, { isolation: 'repeatable read', readOnly: true });
      return { plan, agentIds: {}, rows: {} };
    }
    return await db.transaction(async (tx) => {
      const planned = await computePlan(tx, model, opts, where);
      const refusal = planned.plan.refusals[0];
      if (refusal) {
        throw new AgentVaultError(refusal.code === 'conflict' ? 'restore-conflict' : refusal.code, planned.plan.refusals.map((r) => r.message).join('\n'), {
          kind: refusal.kind,
          remedy: [...new Set(planned.plan.refusals.map((r) => r.remedy))],
        });
      }
      const rows = await writeAll(tx, model, planned, opts);
      const agentIds: Record<string, string> = {};
      for (const p of planned.plan.agents) if (p.target_id && p.action !== 'skip' && p.action !== 'conflict') agentIds[p.source_id] = p.target_id;
      return { plan: planned.plan, agentIds, rows };
    });
  } finally {
    await model.close();
  }
}

export type { ColumnInfo };
