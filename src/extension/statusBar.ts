/**
 * The vault's health at a glance: a status bar item with the age of the newest snapshot and the
 * latest drill result, coloured by the rules of `agent-vault status` (src/vault/status.ts):
 * green (level ok), stale (warning: an old backup, an overdue or missing drill, a failed backup
 * run) or failing (error: the latest drill failed). Clicking it opens the status report.
 */
import * as vscode from 'vscode';
import { errorMessage } from '../core/errors';
import type { StatusPolicy } from '../vault/config';
import type { VaultStatus } from '../vault/status';
import type { DecryptOptions } from '../format/crypto';
import { vaultStatusOf, type RemoteSnapshotCache } from '../vault/remote/catalog';
import type { Log } from './log';
import { relativeAge } from './snapshotsTree';

export const SHOW_STATUS_COMMAND = 'agentVault.showStatus';

export type HealthState = 'green' | 'stale' | 'failing' | 'none';

export function healthState(st: VaultStatus | undefined): HealthState {
  if (!st || st.snapshots === 0) return 'none';
  return st.level === 'ok' ? 'green' : st.level === 'warning' ? 'stale' : 'failing';
}

/** The newest drill over all agents: "drill passed 2 h ago", "drill FAILED", "never drilled". */
function drillText(st: VaultStatus): string {
  const drills = st.agents.map((a) => a.last_drill).filter((d): d is NonNullable<typeof d> => !!d);
  if (st.agents.some((a) => a.drill_failed)) return 'drill failed';
  if (drills.length === 0) return 'never drilled';
  const newest = drills.reduce((x, y) => (x.at > y.at ? x : y));
  return `drill passed ${relativeAge(newest.at)}`;
}

export class VaultStatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  status: VaultStatus | undefined;
  state: HealthState = 'none';
  private timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly vaultDir: () => string,
    private readonly policy: () => StatusPolicy,
    private readonly log: Log,
    private readonly remote?: RemoteSnapshotCache,
    /** the key of an encrypted store vault (its snapshot list is encrypted) */
    private readonly keys?: () => Promise<DecryptOptions | undefined>,
  ) {
    this.item = vscode.window.createStatusBarItem('agentVault.status', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'Agent Vault: backup status';
    this.item.command = SHOW_STATUS_COMMAND;
    // ages change with time: re-read the (small) index, drill reports and run log every minute
    this.timer = setInterval(() => void this.refresh(), 60_000);
    void this.refresh();
  }

  /** Re-reads the status; calls made while one runs are merged into one more run. */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.update().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.running;
  }

  private async update(): Promise<void> {
    let st: VaultStatus | undefined;
    try {
      st = await vaultStatusOf(this.vaultDir(), this.policy(), this.remote, this.keys);
    } catch (e) {
      // no vault yet (the Snapshots view's welcome explains how to start): no item
      if ((e as { code?: string }).code !== 'no-vault') this.log.warn(`backup status: ${errorMessage(e)}`);
      st = undefined;
    }
    this.status = st;
    this.state = healthState(st);
    this.render();
  }

  private render(): void {
    const st = this.status;
    const item = this.item;
    if (!st || this.state === 'none') {
      item.hide();
      return;
    }
    const age = st.newest_snapshot ? relativeAge(st.newest_snapshot.created_at) : 'no snapshots';
    const icon = this.state === 'green' ? '$(pass-filled)' : this.state === 'stale' ? '$(warning)' : '$(error)';
    item.text = `${icon} Vault ${age} · ${drillText(st)}`;
    item.color = this.state === 'green' ? new vscode.ThemeColor('testing.iconPassed') : undefined;
    item.backgroundColor =
      this.state === 'stale' ? new vscode.ThemeColor('statusBarItem.warningBackground') : this.state === 'failing' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    const tip = new vscode.MarkdownString();
    tip.supportThemeIcons = true;
    tip.appendMarkdown(`**Agent Vault: ${this.state === 'green' ? 'healthy' : this.state === 'stale' ? 'needs attention' : 'failing'}**  \n`);
    tip.appendMarkdown(`${st.snapshots} snapshot(s); newest ${age}; policy: backup within ${st.policy.maxAgeHours} h, passing drill within ${st.policy.drillMaxAgeDays} days  \n`);
    for (const w of st.warnings) tip.appendMarkdown(`- ${w}\n`);
    for (const a of st.agents) if (a.warnings.length) tip.appendMarkdown(`- ${a.name ?? a.id}: ${a.warnings.join('; ')}\n`);
    tip.appendMarkdown('\nClick for the status report.');
    item.tooltip = tip;
    item.show();
  }

  dispose(): void {
    clearInterval(this.timer);
    this.item.dispose();
  }
}
