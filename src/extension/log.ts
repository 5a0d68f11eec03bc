/**
 * The "Agent Vault" output channel, and how a command reports a failure: an error notification
 * with the message (what and where, never a stack), the hint when there is one, and a "Show Log"
 * button that opens the channel, where the details (cause, stack) are.
 */
import * as vscode from 'vscode';
import { AgentVaultError, errorMessage, formatLocation, type ErrorRemedy } from '../core/errors';

/** How the extension words each remedy an error names (the CLI names its flags instead). */
const REMEDY_HINT: Readonly<Record<ErrorRemedy, string>> = {
  overwrite: 'choose another file name or allow overwriting',
  key: 'set the vault passphrase (Agent Vault: Set Vault Passphrase…)',
  'on-conflict': 'choose Skip, Replace or Copy for agents that exist already',
  'force-schema': 'the target runs a Letta schema revision this snapshot is not compatible with',
  'allow-embedding-mismatch': "the target's embedding model differs from the snapshot's",
  wait: 'wait for the other run to finish',
  encrypt: 'turn on agentVault.encryptSnapshots',
  schema: 'check the connection\'s schema (default "letta")',
  'select-agents': 'choose the agents to export',
  config: 'set agentVault.configFile',
  vault: 'set agentVault.vaultPath',
  'replace-collections': 'the collections exist on the Qdrant server already',
  'repoint-alias': 'the alias points at another collection on the Qdrant server',
  'target-name': 'restore into a new collection',
  'skip-checksum': 'use another backup',
  'without-points': 'back up this collection without the points export',
  'from-snapshot': 'restore from the snapshot instead of the points export',
  'more-time': 'allow more time or attempts',
  'api-key': 'check the Qdrant API key',
  'api-key-env': 'set the Qdrant API key in the environment variable named for it',
  'qdrant-url': 'check the Qdrant server address, e.g. http://127.0.0.1:6333',
  'qdrant-timeout': 'check the Qdrant request timeout (milliseconds)',
  'qdrant-upload-timeout': 'check the Qdrant upload timeout (milliseconds)',
  'qdrant-retries': 'check the number of Qdrant retries',
  'select-collection': 'choose one collection to restore under another name',
  retention: 'set agentVault.retention (at least one rule, each a count ≥ 0)',
  'rebuild-index': 'rebuild the vault index from its archives (Agent Vault: Rebuild Index)',
  'create-vault': 'a first backup creates the vault',
  'list-snapshots': 'see the Snapshots view for the snapshots of the vault',
  'verify-vault': 'check the vault, reading its data (Agent Vault: Verify Vault, deep)',
  'export-snapshot': 'write the store snapshot as a single-file archive with the agent-vault CLI (vault export)',
  'init-store': 'make a store vault, or migrate the vault into one, with the agent-vault CLI',
};

export const SHOW_LOG = 'Show Log';

/** Thrown when the user cancels a long operation (progress notification's Cancel button). */
export class Cancelled extends Error {
  constructor() {
    super('cancelled');
    this.name = 'Cancelled';
  }
}

export class Log implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  /** The last failure reported to the user (read by the extension's tests). */
  lastError: { title: string; message: string; code?: string } | undefined;

  constructor() {
    this.channel = vscode.window.createOutputChannel('Agent Vault', { log: true });
  }

  info(msg: string): void {
    this.channel.info(msg);
  }

  warn(msg: string): void {
    this.channel.warn(msg);
  }

  show(): void {
    this.channel.show(true);
  }

  /**
   * Reports a failure of `title` ("Export failed", …). Not awaited by callers: a notification's
   * promise settles only when the user closes it.
   */
  report(title: string, e: unknown): void {
    if (e instanceof Cancelled) {
      this.info(`${title}: cancelled`);
      void vscode.window.showInformationMessage(`Agent Vault: ${title.replace(/ failed$/, '')} cancelled.`);
      return;
    }
    const avError = e instanceof AgentVaultError ? e : undefined;
    let message = errorMessage(e);
    const where = formatLocation(avError?.location);
    if (where && !message.includes(where)) message += ` (${where})`;
    const hints = avError ? [...avError.remedies.map((r) => REMEDY_HINT[r]), ...(avError.hint ? [avError.hint] : [])] : [];
    const hint = hints.length ? ` — ${hints.join('; ')}` : avError ? '' : ' — see the log for details';
    this.lastError = { title, message, code: avError?.code };
    this.channel.error(`${title}: ${message}${avError?.code ? ` [${avError.code}]` : ''}`);
    for (const h of hints) this.channel.error(`  hint: ${h}`);
    let cause: unknown = (e as { cause?: unknown } | null)?.cause;
    while (cause) {
      this.channel.error(`  caused by: ${errorMessage(cause)}`);
      cause = (cause as { cause?: unknown }).cause;
    }
    if (!avError && e instanceof Error && e.stack) this.channel.error(e.stack);
    void vscode.window.showErrorMessage(`Agent Vault: ${title}: ${message}${hint}`, SHOW_LOG).then((pick) => {
      if (pick === SHOW_LOG) this.show();
    });
  }

  dispose(): void {
    this.channel.dispose();
  }
}

/**
 * Runs long work under a cancellable progress notification. `work` gets a `check()` to call
 * between steps (it throws Cancelled once the user cancelled) and a `report(message)`.
 */
export function withProgress<T>(
  title: string,
  work: (p: { report: (message: string) => void; check: () => void; cancelled: () => boolean; token: vscode.CancellationToken }) => Promise<T>,
  /** false for work that cannot stop midway once started (a prune deleting, an index being written): no Cancel button is offered */
  opts: { cancellable?: boolean } = {},
): Thenable<T> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Agent Vault: ${title}`, cancellable: opts.cancellable ?? true }, (progress, token) => {
    let pressed = false;
    const cancelled = () => pressed || token.isCancellationRequested;
    return work({
      report: (message) => {
        progress.report({ message });
        // what the Cancel button does, for the extension's tests (they cannot press it)
        if (progressTestHooks.cancelWhen?.(title, message)) pressed = true;
      },
      check: () => {
        if (cancelled()) throw new Cancelled();
      },
      cancelled,
      token,
    });
  });
}

/**
 * Test hook: when `cancelWhen(title, message)` returns true for a progress message, the operation
 * behaves as if the user pressed Cancel on its notification (set only by the extension's tests).
 */
export const progressTestHooks: { cancelWhen?: (title: string, message: string) => boolean } = {};
