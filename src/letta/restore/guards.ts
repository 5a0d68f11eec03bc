/**
 * The guards of a restore: the Letta schema revisions of source and target, and the embeddings
 * of archival passages against the target's (both refuse unless forced; both messages name both sides).
 */
import { AgentVaultError } from '../../core/errors';
import type { Queryable } from '../../db/types';
import { COMPATIBLE_REVISIONS, isCompatibleRevision } from '../compat';
import { loadColumns, type LettaDbInfo } from '../sql';
import { isObj, num } from '../tables/common';
import type { SourceModel, SrcAgent } from './model';
import type { PlanRefusal, RestoreOptions, RestorePlan } from './types';

/** The guards' outcome for the plan; refusals and warnings are appended to the lists given. */
export async function checkGuards(
  tx: Queryable,
  model: SourceModel,
  info: LettaDbInfo,
  opts: RestoreOptions,
  org: string,
  restored: SrcAgent[],
  deleteArchives: string[],
  refusals: PlanRefusal[],
  warnings: string[],
): Promise<RestorePlan['guards']> {
  // guards: revision
  const srcRev = model.revision;
  // An agent file (plain, or packed into an archive) is interchange: it is upgraded on the way in
  // (v1 → v2, missing fields defaulted), as Letta's own import takes any revision. Only a snapshot
  // of a database at another revision is held to the compatible list; the target always is.
  const interchange = model.sourceKind === 'agent-file';
  const revOk = interchange
    ? isCompatibleRevision(info.revision)
    : (srcRev === info.revision && isCompatibleRevision(info.revision)) || (isCompatibleRevision(srcRev) && isCompatibleRevision(info.revision));
  const forcedRev = !revOk && !!opts.forceSchema;
  if (!revOk && !opts.forceSchema) {
    const known = COMPATIBLE_REVISIONS.map((r) => r.revision).join(', ');
    refusals.push({
      code: 'revision-mismatch',
      message:
        `Letta schema revision mismatch: the source was written at revision ${srcRev ?? 'unknown'} and the target database is at revision ${info.revision}. ` +
        (isCompatibleRevision(info.revision) ? `${srcRev ?? 'An unknown revision'} is not in the compatible list` : `the target's revision is not one this version of Agent Vault writes`) +
        ` (compatible: ${known}; see docs/RESTORE.md).`,
      kind: 'mismatch',
      remedy: 'force-schema',
    });
  } else if (forcedRev) {
    warnings.push(`schema revision ${srcRev ?? 'unknown'} → ${info.revision} is not in the compatible list; restoring anyway, as asked (force schema)`);
  }

  // guards: embeddings of archival passages
  const withPassages = restored.filter((a) => a.passages > 0);
  const embeddingGuards: RestorePlan['guards']['embedding'] = [];
  if (withPassages.length) {
    const t = await tx.query<{ model: string | null; dim: string | null }>(
      `SELECT DISTINCT model, dim FROM (
          SELECT embedding_config->>'embedding_model' AS model, embedding_config->>'embedding_dim' AS dim FROM archives
           WHERE organization_id = $1 AND embedding_config IS NOT NULL AND NOT (id = ANY($2::text[]))
          UNION ALL
          SELECT embedding_config->>'embedding_model', embedding_config->>'embedding_dim' FROM archival_passages
           WHERE organization_id = $1 AND embedding_config IS NOT NULL AND NOT (archive_id = ANY($2::text[]))) x
        ORDER BY 1, 2`,
      [org, deleteArchives],
    );
    const target = t.rows.map((r) => ({ model: r.model, dim: num(r.dim) }));
    const cols = await loadColumns(tx, ['archival_passages']);
    const colDim = cols.get('archival_passages')!.find((c) => c.name === 'embedding')?.vectorDim ?? null;
    for (const a of withPassages) {
      const ec = (a.archive && isObj(a.archive.embedding_config) ? a.archive.embedding_config : null) ?? (isObj(a.obj.embedding_config) ? a.obj.embedding_config : null);
      const model_ = a.manifest?.embedding?.model ?? (ec?.embedding_model as string | undefined) ?? null;
      const dim = a.manifest?.embedding?.dim ?? num(ec?.embedding_dim);
      if (colDim !== null && dim !== null && dim > colDim) {
        throw new AgentVaultError(
          'embedding-mismatch',
          `agent ${JSON.stringify(a.name)}: its embeddings have ${dim} dimensions, more than the ${colDim} the target's archival_passages.embedding column holds.`,
          { kind: 'mismatch' },
        );
      }
      const ok = target.length === 0 || target.some((x) => x.model === model_ && x.dim === dim);
      embeddingGuards.push({ agent: a.name ?? a.fileId, model: model_, dim, target, ok, forced: !ok && !!opts.allowEmbeddingMismatch });
      if (!ok && !opts.allowEmbeddingMismatch) {
        refusals.push({
          code: 'embedding-mismatch',
          message:
            `Embedding mismatch for agent ${JSON.stringify(a.name)}: its archival passages were embedded with ${model_ ?? 'an unknown model'} (${dim ?? '?'} dimensions), ` +
            `but the target's existing passages/archives use ${target.map((x) => `${x.model ?? 'an unknown model'} (${x.dim ?? '?'} dimensions)`).join(', ')}. ` +
            `Nothing was restored.`,
          kind: 'mismatch',
          remedy: 'allow-embedding-mismatch',
        });
      } else if (!ok) warnings.push(`agent ${JSON.stringify(a.name)}: embedding model ${model_} (${dim}) differs from the target's; restoring anyway, as asked (embedding mismatch allowed)`);
    }
  }
  return { revision: { source: srcRev, target: info.revision, compatible: revOk, forced: forcedRev, interchange }, embedding: embeddingGuards };
}
