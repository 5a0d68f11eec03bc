import * as vscode from 'vscode';

/** Command ids contributed in package.json (`contributes.commands`). */
export const COMMANDS = {
  validateAgentFile: 'agentVault.validateAgentFile',
} as const;

/** Entry point VS Code calls on the first activation event (see `activationEvents` in package.json). */
export function activate(context: vscode.ExtensionContext): void {
  context.subscriptions.push(
    vscode.commands.registerCommand(COMMANDS.validateAgentFile, () => {
      // Placeholder until validation is wired in: proves the command runs end to end.
      // Not awaited: a notification's promise settles only when the user closes it.
      void vscode.window.showInformationMessage('Agent Vault: validation is not implemented yet.');
    }),
  );
}

export function deactivate(): void {
  // Nothing to release yet: everything registered lives in context.subscriptions.
}
