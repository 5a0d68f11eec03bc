/**
 * The plan of a restore as text for a terminal (the CLI prints this; the VS Code extension shows the object).
 */
import type { PlanAction, RestorePlan } from './types';

/** The plan as text for a terminal (the CLI prints this; the VS Code extension shows the object). */
export function formatPlan(plan: RestorePlan): string {
  const lines: string[] = [];
  lines.push(
    `${plan.dry_run ? 'Dry run: nothing will be changed.\n' : ''}Restore from ${plan.source.path ?? 'an agent file'} (${plan.source.kind}${plan.source.format ? `, ${plan.source.format}` : ''}, Letta revision ${plan.source.revision ?? 'unknown'})`,
  );
  lines.push(`into ${plan.target.database} schema ${plan.target.schema} (revision ${plan.target.revision}), organization ${plan.target.organization_id}`);
  if (plan.source.encrypted)
    lines.push(
      `The archive is encrypted; ${plan.source.secret_values ? `${plan.source.secret_values} secret value${plan.source.secret_values === 1 ? '' : 's'} (environment variables) will be written` : 'no secret values are written'}.`,
    );
  const verb: Record<PlanAction, string> = { create: 'create ', rename: 'copy   ', skip: 'skip   ', replace: 'replace', conflict: 'CONFLICT' };
  lines.push('');
  lines.push('Agents:');
  for (const a of plan.agents) {
    const target = a.action === 'rename' ? ` as ${JSON.stringify(a.target_name)} (${a.target_id})` : a.target_id ? ` → ${a.target_id}` : '';
    const why = a.existing_id ? ` [exists: ${a.existing_id}, same ${a.conflict_by}]` : '';
    const sys = a.adds_system_message && a.target_id ? '; no in-context message: its system message is written as Letta writes it' : '';
    lines.push(
      `  ${verb[a.action]} ${JSON.stringify(a.name)}${target}${why}  (${a.counts.messages} messages, ${a.counts.in_context_messages} in context, ${a.counts.blocks} blocks, ${a.counts.tools} tools, ${a.counts.passages} passages${sys})`,
    );
  }
  const s = plan.summary;
  lines.push('');
  lines.push(`Created: ${s.created.length}  Renamed: ${s.renamed.length}  Skipped: ${s.skipped.length}  Replaced: ${s.replaced.length}  Conflicts: ${s.conflicts.length}`);
  const tc = (k: string) => plan.tools.filter((t) => t.action === k).length;
  if (plan.tools.length) lines.push(`Tools: ${tc('create')} created, ${tc('keep')} kept as they are, ${tc('replace')} overwritten`);
  if (plan.groups.length) lines.push(`Groups: ${plan.groups.map((g) => `${g.action} ${g.source_id}`).join(', ')}`);
  const d = plan.deletes;
  if (d.agents.length) lines.push(`Deleted first: ${d.agents.length} agents, ${d.blocks.length} blocks only they used, ${d.archives.length} archives, ${d.groups.length} groups`);
  for (const w of plan.warnings) lines.push(`warning: ${w}`);
  for (const r of plan.refusals) lines.push(`refused: ${r.message}`);
  return lines.join('\n') + '\n';
}
