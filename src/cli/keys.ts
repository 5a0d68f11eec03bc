/**
 * The key options of the commands that read or write encrypted archives outside a vault
 * (restore, export, unpack, validate, inspect): the same names as the vault commands'.
 *
 *   --passphrase-env NAME   the passphrase from this environment variable
 *   --passphrase-file FILE  the passphrase from this file (first line)
 *   --key-file FILE         a 32-byte key (raw, 64 hex digits or base64) instead of a passphrase
 *
 * Without any, AGENT_VAULT_PASSPHRASE is used when it is set (src/vault/config.ts).
 */
import type { Command } from 'commander';
import type { DecryptOptions } from '../format/crypto';
import { decryptOptions, resolveKeyMaterial, writingKey } from '../vault/config';
import type { ArchiveKey } from '../format/crypto';

export interface KeyFlags {
  passphraseEnv?: string;
  passphraseFile?: string;
  keyFile?: string;
}

export function addKeyOptions(c: Command): Command {
  return c
    .option('--passphrase-env <NAME>', 'encrypted archives: read the passphrase from this environment variable (default AGENT_VAULT_PASSPHRASE)')
    .option('--passphrase-file <file>', 'encrypted archives: read the passphrase from this file')
    .option('--key-file <file>', 'encrypted archives: use this 32-byte key file instead of a passphrase');
}

/** What openArchive / restoreAgents take, from the options (undefined: no key available). */
export async function decryptFromFlags(o: KeyFlags, env: NodeJS.ProcessEnv = process.env): Promise<DecryptOptions | undefined> {
  const m = await resolveKeyMaterial(undefined, { passphraseEnv: o.passphraseEnv, passphraseFile: o.passphraseFile, keyFile: o.keyFile, env });
  return decryptOptions(m);
}

/** A key to write an encrypted archive with (a passphrase gets a new scrypt salt); fails (exit 2) without one. */
export async function encryptionFromFlags(o: KeyFlags, env: NodeJS.ProcessEnv = process.env): Promise<{ key: ArchiveKey }> {
  const m = await resolveKeyMaterial(undefined, { passphraseEnv: o.passphraseEnv, passphraseFile: o.passphraseFile, keyFile: o.keyFile, env });
  return { key: (await writingKey(m, null)).key };
}
