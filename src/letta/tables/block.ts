/**
 * Letta's `block` and `blocks_tags` tables (memory blocks): row → .af block (export), target id
 * (plan: kept, new, or linked to an existing block), .af block → rows (restore).
 */
import type { JsonObject } from '../../format/types';
import { newId } from '../sql';
import { existing, isObj, strs, tableWriter, type Obj, type PlanContext, ORM_COLUMNS } from './common';

export const BLOCK_EXTRA_COLUMNS = ['created_at', 'updated_at', 'version'];

export function blockJson(b: Obj, fileId: string, tags: string[] | undefined): JsonObject {
  return {
    value: b.value,
    limit: b.limit,
    project_id: b.project_id,
    template_name: b.template_name,
    is_template: b.is_template,
    template_id: b.template_id,
    base_template_id: b.base_template_id,
    deployment_id: b.deployment_id,
    entity_id: b.entity_id,
    preserve_on_migration: b.preserve_on_migration,
    label: b.label,
    read_only: b.read_only,
    description: b.description,
    metadata: isObj(b.metadata_) ? b.metadata_ : {},
    hidden: b.hidden,
    tags: tags && tags.length ? tags : null,
    id: fileId,
  };
}

/** Target ids of the blocks to write: the original id where free, a new one for copies, or a link to an existing block. */
export async function assignBlocks(p: PlanContext): Promise<void> {
  const { tx, model, newIds, restored, assign, warnings, wantBlocks, freedBlocks } = p;
  const blockDb = [...wantBlocks].map((b) => model.blocks.get(b)!).filter((b) => b.dbId && !newIds);
  const takenBlocks = await existing(
    tx,
    'block',
    blockDb.map((b) => b.dbId!),
  );
  const referencing = (blockFile: string) => restored.filter((a) => strs(a.obj.block_ids).includes(blockFile));
  for (const bf of wantBlocks) {
    const b = model.blocks.get(bf)!;
    const refs = referencing(bf);
    const allCopies = refs.length > 0 && refs.every((a) => assign.copy.has(a.fileId));
    const db = newIds ? null : b.dbId;
    if (db && takenBlocks.has(db) && !freedBlocks.has(db)) {
      if (allCopies) assign.blocks.set(bf, newId('block'));
      else {
        assign.blocks.set(bf, db);
        assign.linkedBlocks.add(bf);
        warnings.push(`block "${b.obj.label}" (${db}) already exists in the target (attached elsewhere); it is linked as it is, not overwritten`);
      }
    } else assign.blocks.set(bf, db && !allCopies ? db : newId('block'));
  }
  if (assign.linkedBlocks.size) {
    const r = await tx.query<{ id: string; label: string }>(`SELECT id, label FROM block WHERE id = ANY($1::text[])`, [[...assign.linkedBlocks].map((b) => assign.blocks.get(b)!)]);
    for (const x of r.rows) assign.blockLabels.set(x.id, x.label);
  }
}

export const blockWriter = tableWriter(['block', 'blocks_tags'], async (ctx) => {
  const { model, A, base, stamps, now, ins } = ctx;
  // blocks + their tags
  const newBlocks = [...A.blocks.keys()].filter((b) => !A.linkedBlocks.has(b));
  await ins(
    'block',
    [
      'id',
      'value',
      'limit',
      'template_name',
      'label',
      'metadata_',
      'description',
      'is_template',
      'organization_id',
      ...ORM_COLUMNS,
      'version',
      'read_only',
      'preserve_on_migration',
      'project_id',
      'entity_id',
      'base_template_id',
      'template_id',
      'deployment_id',
      'hidden',
    ],
    newBlocks.map((bf) => {
      const b = model.blocks.get(bf)!;
      const o = b.obj;
      return {
        id: A.blocks.get(bf),
        value: typeof o.value === 'string' ? o.value : '',
        limit: typeof o.limit === 'number' ? o.limit : 100000,
        template_name: o.template_name ?? null,
        label: o.label,
        metadata_: o.metadata ?? o.metadata_ ?? {},
        description: o.description ?? null,
        is_template: o.is_template ?? false,
        ...base,
        ...stamps(b.extra),
        version: b.extra.version ?? 1,
        read_only: o.read_only ?? false,
        preserve_on_migration: o.preserve_on_migration ?? null,
        project_id: o.project_id ?? null,
        entity_id: o.entity_id ?? null,
        base_template_id: o.base_template_id ?? null,
        template_id: o.template_id ?? null,
        deployment_id: o.deployment_id ?? null,
        hidden: o.hidden ?? null,
      };
    }),
    { defaults: now },
  );
  await ins(
    'blocks_tags',
    ['block_id', 'tag', ...ORM_COLUMNS, 'organization_id'],
    newBlocks.flatMap((bf) => [...new Set(strs(model.blocks.get(bf)!.obj.tags))].map((tag) => ({ block_id: A.blocks.get(bf), tag, ...base }))),
    { defaults: now },
  );
});
