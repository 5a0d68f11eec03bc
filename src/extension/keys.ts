/**
 * Key material for reading encrypted snapshots: the vault passphrase from VS Code's SecretStorage
 * (or AGENT_VAULT_PASSPHRASE in the extension host's environment), resolved by the library's
 * resolveKeyMaterial. Every read path of the extension (the document cache, diffs, restore, drill,
 * verify) asks here, so a snapshot the extension wrote encrypted can be read back.
 */
import type * as vscode from 'vscode';
import type { DecryptOptions } from '../format/crypto';
import { decryptOptions, resolveKeyMaterial } from '../vault/config';

export type KeyProvider = () => Promise<DecryptOptions | undefined>;

export function secretKeyProvider(secrets: vscode.SecretStorage): KeyProvider {
  return async () => decryptOptions(await resolveKeyMaterial(undefined, { secrets }));
}
