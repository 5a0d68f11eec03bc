/**
 * "Restore Agents…": pick a snapshot and its agents, a target database and what to do on a
 * conflict; show the dry-run plan (planRestore), ask for confirmation, then restore in one
 * transaction (restoreAgents) under a cancellable progress notification.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AgentVaultError } from '../core/errors';
import { describeSnapshotAny, listVaultSnapshotsAny, restoreSourceAny } from '../vault/store-catalog';
import { formatPlan, planRestore, restoreAgents, type OnConflict, type RestorePlan, type RestoreResult, type ToolsMode } from '../letta/restore';
import type { Services } from './commands';
import { pickConnection } from './commands';
import { showDoc } from './documents';
import { withProgress } from './log';
import { agentIn } from '../vault/catalog';
import type { AgentGroupNode, SnapshotNode } from './snapshotsTree';
import { setting } from './config';

export interface RestoreArgs {
  snapshot?: string;
  agents?: string[];
  connection?: string;
  onConflict?: OnConflict;
  tools?: ToolsMode;
  /** skip the confirmation (tests) */
  confirmed?: boolean;
  /** only compute and show the plan */
  dryRun?: boolean;
  /** from a snapshot item holding several agents: restore only its agent, or every agent of the snapshot (default: ask) */
  scope?: 'agent' | 'snapshot';
}

const CONFLICT_CHOICES: Array<{ value: OnConflict; label: string; detail: string }> = [
  { value: 'fail', label: 'Fail', detail: 'refuse the restore if an agent exists already' },
  { value: 'skip', label: 'Skip', detail: 'leave existing agents as they are, restore the others' },
  { value: 'replace', label: 'Replace', detail: 'delete the existing agent (and what only it owned), then restore' },
  { value: 'copy', label: 'Copy', detail: 'restore beside the existing agent, with new ids and a name suffix' },
];

export async function restoreFlow(
  s: Services,
  arg?: SnapshotNode | AgentGroupNode | RestoreArgs,
  extra?: Omit<RestoreArgs, 'snapshot' | 'agents'>,
): Promise<{ plan: RestorePlan; result?: RestoreResult } | undefined> {
  // a snapshot item restores its agent from it; an agent item restores the agent from its newest snapshot
  const group = arg && (arg as AgentGroupNode).type === 'agent' ? (arg as AgentGroupNode) : undefined;
  const node = arg && (arg as SnapshotNode).type === 'snapshot' ? (arg as SnapshotNode) : group?.snapshots[0] ? { snapshot: group.snapshots[0], agent: agentIn(group.snapshots[0], group) } : undefined;
  // from a tree item, `extra` answers the remaining questions (the extension's tests)
  const args: RestoreArgs = node ? (extra ?? {}) : ((arg as RestoreArgs | undefined) ?? {});
  // 1. the snapshot
  let file = node?.snapshot.path ?? args.snapshot;
  if (!file) {
    const snaps = await listVaultSnapshotsAny(s.vaultDir(), s.documents.sources.keys);
    const items = snaps.map((x) => ({
      label: x.listed ? x.id : path.basename(x.path),
      description: new Date(x.created_at).toLocaleString(),
      detail: x.agents.map((a) => `${a.name ?? a.id}${a.counts ? ` (${a.counts.messages} messages, ${a.counts.passages} passages)` : ''}`).join(', '),
      file: x.path as string | undefined,
    }));
    items.push({ label: '$(folder-opened) Browse…', description: 'an archive or .af file elsewhere', detail: '', file: undefined });
    const pick = await vscode.window.showQuickPick(items, { title: 'Agent Vault: restore from which snapshot?', matchOnDetail: true });
    if (!pick) return undefined;
    file = pick.file;
    if (!file) {
      const files = await vscode.window.showOpenDialog({ title: 'Restore from', canSelectMany: false, filters: { 'Snapshots and agent files': ['avsnap', 'zip', 'af', 'json'] } });
      if (!files?.length) return undefined;
      file = files[0].fsPath;
    }
  }
  const source = file;
  // 2. the agents: a snapshot item restores its agent, or (asked when it holds more) every agent of the snapshot
  let scope = args.scope;
  if (node && !group && !scope && node.snapshot.agents.length > 1) {
    const n = node.snapshot.agents.length;
    const pick = await vscode.window.showQuickPick(
      [
        { label: `Only ${node.agent.name ?? node.agent.id}`, detail: 'the agent of this item, from this snapshot', scope: 'agent' as const },
        { label: `All ${n} agents of this snapshot`, detail: node.snapshot.agents.map((a) => a.name ?? a.id).join(', '), scope: 'snapshot' as const },
      ],
      { title: 'Agent Vault: restore what?' },
    );
    if (!pick) return undefined;
    scope = pick.scope;
  }
  let agents = args.agents ?? (node ? (scope === 'snapshot' ? node.snapshot.agents.map((a) => a.id) : [node.agent.id]) : undefined);
  if (!agents) {
    const desc = await describeSnapshotAny(source, { decrypt: await s.documents.sources.keys() });
    if (desc.agents.length === 0) throw new AgentVaultError('no-agent', `${source} holds no agents`);
    if (desc.agents.length === 1) agents = [desc.agents[0].id];
    else {
      const picks = await vscode.window.showQuickPick(
        desc.agents.map((a) => ({ label: a.name ?? a.id, description: `${a.messages} messages`, detail: a.id, picked: true, id: a.id })),
        { title: 'Agent Vault: agents to restore', canPickMany: true, ignoreFocusOut: true },
      );
      if (!picks?.length) return undefined;
      agents = picks.map((p) => p.id);
    }
  }
  // 3. the target and the conflict rule
  const name = await pickConnection(s, args.connection);
  if (!name) return undefined;
  let onConflict = args.onConflict;
  if (!onConflict) {
    const dflt = setting('restore.onConflict');
    const pick = await vscode.window.showQuickPick(
      [...CONFLICT_CHOICES].sort((a, b) => (a.value === dflt ? -1 : b.value === dflt ? 1 : 0)).map((c) => ({ label: c.label, detail: c.detail, value: c.value })),
      { title: 'Agent Vault: if an agent exists in the target already…' },
    );
    if (!pick) return undefined;
    onConflict = pick.value;
  }
  const tools: ToolsMode = args.tools ?? setting('restore.tools');
  const decrypt = await s.documents.sources.keys();
  const opts = { agents, onConflict, tools, decrypt };
  // 4. the plan
  const plan = await withProgress('Planning the restore (dry run)', async (p) => {
    const r = await s.connections.with(name, (db) => planRestore(db, restoreSourceAny(source, decrypt), opts));
    p.check(); // the plan writes nothing: Cancel stops before the restore
    return r;
  });
  const planText = formatPlan(plan);
  s.log.info(`restore plan for ${source} → "${name}":\n${planText}`);
  if (args.dryRun) return { plan };
  await showDoc(s.documents.textUri('restore-plan.txt', planText), { preview: true });
  if (plan.refusals.length) {
    throw new AgentVaultError(plan.refusals[0].code === 'conflict' ? 'restore-conflict' : plan.refusals[0].code, plan.refusals.map((r) => r.message).join(' '), {
      hint: plan.refusals[0].code === 'conflict' ? 'choose Skip, Replace or Copy for agents that exist already' : 'see the plan',
    });
  }
  // 5. confirmation
  if (!args.confirmed) {
    const go = 'Restore';
    const sum = plan.summary;
    const detail = [
      sum.created.length ? `create ${sum.created.join(', ')}` : '',
      sum.replaced.length ? `REPLACE ${sum.replaced.join(', ')}` : '',
      sum.renamed.length ? `copy ${sum.renamed.join(', ')}` : '',
      sum.skipped.length ? `skip ${sum.skipped.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    const pick = await vscode.window.showWarningMessage(
      `Restore ${plan.agents.length} agent${plan.agents.length === 1 ? '' : 's'} into "${name}"?`,
      { modal: true, detail: `${detail}. One transaction: all or nothing.` },
      go,
    );
    if (pick !== go) return { plan };
  }
  // 6. the restore
  const result = await withProgress(`Restoring into "${name}"`, (p) =>
    s.connections.with(name, (db) =>
      restoreAgents(db, restoreSourceAny(source, decrypt), {
        ...opts,
        onProgress: (e) => {
          p.check();
          p.report(`${e.step}: ${e.rows} rows`);
        },
      }),
    ),
  );
  const restored = Object.keys(result.agentIds).length;
  s.log.info(`restored ${restored} agent(s) from ${source} into "${name}": ${JSON.stringify(result.rows)}`);
  s.databases.refresh();
  void vscode.window.showInformationMessage(`Agent Vault: restored ${restored} agent${restored === 1 ? '' : 's'} into "${name}".`);
  return { plan: result.plan, result };
}
