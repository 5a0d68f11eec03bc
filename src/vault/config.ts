/**
 * The vault configuration (`agent-vault.json`, schema `schemas/vault-config.schema.json`) and the
 * resolution of encryption keys (environment variable, file, VS Code SecretStorage, key file).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError } from '../core/fs';
import type { SecretReader } from '../core/secrets';
import { getValidator } from '../format/schemas';
import { describeAjvErrors } from '../format/validate';
import { keyFromPassphrase, readKeyFile, type ArchiveKey, type DecryptOptions, type KdfDescription, type ScryptParams } from '../format/crypto';
import type { RetentionPolicy } from './retention';
import type { WebhookConfig } from './webhook';
import { checkWebhookUrl } from './webhook';
import { isS3Location } from './remote/location';

export const DEFAULT_CONFIG_FILE = 'agent-vault.json';
export const DEFAULT_PASSPHRASE_ENV = 'AGENT_VAULT_PASSPHRASE';
/** Name under which the VS Code extension keeps the vault passphrase in SecretStorage. */
export const PASSPHRASE_SECRET = 'agent-vault.vault.passphrase';

export type SourceConfig = { kind: 'postgres'; url?: string; urlEnv?: string; schema?: string } | { kind: 'pglite'; dataDir: string; schema?: string };

export interface EncryptionConfig {
  enabled?: boolean;
  passphraseEnv?: string;
  passphraseFile?: string;
  keyFile?: string;
  secretStorageKey?: string;
  scrypt?: Partial<ScryptParams>;
}

export interface StatusPolicy {
  /** A newest backup older than this is stale (default 26 h: a daily job plus slack). */
  maxAgeHours?: number;
  /** No passing drill within this many days is a warning (default 7). */
  drillMaxAgeDays?: number;
}

export interface ProbeConfig {
  perAgent?: number;
  topK?: number;
  metric?: 'cosine' | 'l2';
}

export interface VaultConfig {
  /** Absolute path of the file it was read from (undefined when built in code). */
  file?: string;
  /** Absolute vault folder, or an s3://bucket/prefix location (docs/VAULT.md "Object storage"). */
  vault: string;
  source: SourceConfig;
  agents?: { all?: boolean; ids?: string[]; names?: string[]; tags?: string[] };
  organizationId?: string;
  qdrant?: { url?: string; urlEnv?: string; apiKeyEnv?: string; collections?: string[]; points?: boolean };
  encryption?: EncryptionConfig;
  includeSecrets?: boolean;
  retention?: RetentionPolicy & { pruneAfterBackup?: boolean };
  policy?: StatusPolicy;
  probes?: ProbeConfig;
  webhook?: WebhookConfig;
  lock?: { waitSeconds?: number };
}

/** Reads, validates (JSON with comments allowed) and resolves relative paths of a config file. */
export async function loadConfig(file: string): Promise<VaultConfig> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await fsp.readFile(abs, 'utf8');
  } catch (e) {
    const err = ioError(e, abs, 'read');
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AgentVaultError('config', `configuration file ${abs} does not exist`, { location: { file: abs }, kind: 'usage', remedy: 'config', hint: 'see docs/VAULT.md for an example' });
    }
    throw err;
  }
  return parseConfig(text, abs);
}

export function parseConfig(text: string, file: string): VaultConfig {
  const errors: ParseError[] = [];
  const value = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length) {
    const e = errors[0];
    const before = text.slice(0, e.offset);
    const line = before.split('\n').length;
    const column = e.offset - before.lastIndexOf('\n');
    throw new AgentVaultError('config', `${file}:${line}:${column}: invalid JSON (${printParseErrorCode(e.error)})`, { location: { file, line, column }, kind: 'usage' });
  }
  const validate = getValidator('vault-config');
  if (!validate(value)) {
    const findings = describeAjvErrors(validate.errors ?? []);
    const first = findings[0];
    const more = findings.length > 1 ? ` (and ${findings.length - 1} more problem${findings.length > 2 ? 's' : ''})` : '';
    throw new AgentVaultError('config', `${file}: invalid configuration: ${first ? `${first.pointer || '/'} ${first.message}` : 'does not match the schema'}${more}`, {
      location: { file, pointer: first?.pointer ?? '' },
      kind: 'usage',
    });
  }
  const cfg = value as VaultConfig;
  const dir = path.dirname(file);
  // an s3:// location stays as written; a folder is relative to the configuration file
  const out: VaultConfig = { ...cfg, file, vault: isS3Location(cfg.vault) ? cfg.vault : path.resolve(dir, cfg.vault) };
  if (out.source.kind === 'pglite') out.source = { ...out.source, dataDir: path.resolve(dir, out.source.dataDir) };
  if (out.encryption) {
    out.encryption = { ...out.encryption };
    if (out.encryption.passphraseFile) out.encryption.passphraseFile = path.resolve(dir, out.encryption.passphraseFile);
    if (out.encryption.keyFile) out.encryption.keyFile = path.resolve(dir, out.encryption.keyFile);
  }
  if (out.webhook) checkWebhookUrl(out.webhook.url);
  const sel = out.agents;
  if (sel && !sel.all && !sel.ids?.length && !sel.names?.length && !sel.tags?.length) {
    throw new AgentVaultError('config', `${file}: "agents" selects nothing: set "all": true or list ids, names or tags`, { location: { file, pointer: '/agents' }, kind: 'usage' });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// keys

export interface KeySources {
  /** From the command line; override the config. */
  passphraseFile?: string;
  passphraseEnv?: string;
  keyFile?: string;
  env?: NodeJS.ProcessEnv;
  /** VS Code SecretStorage (the extension passes it; the CLI has none). */
  secrets?: SecretReader;
}

/** Where a passphrase or key comes from, resolved: what the user gave, or nothing. */
export type KeyMaterial = { kind: 'passphrase'; passphrase: string; from: string } | { kind: 'key'; key: ArchiveKey; from: string } | { kind: 'none' };

async function readPassphraseFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  const p = text.replace(/\r?\n$/, '');
  if (!p) throw new AgentVaultError('encryption', `passphrase file ${file} is empty`, { location: { file }, kind: 'usage' });
  return p;
}

/**
 * The passphrase or key, in this order: key file (command line, then config), passphrase file
 * (command line, then config), the environment variable (command line name, config name, then
 * AGENT_VAULT_PASSPHRASE), then VS Code SecretStorage (config `secretStorageKey`, default
 * PASSPHRASE_SECRET). `{ kind: 'none' }` when none is available.
 */
export async function resolveKeyMaterial(enc: EncryptionConfig | undefined, src: KeySources = {}): Promise<KeyMaterial> {
  const env = src.env ?? process.env;
  const keyFile = src.keyFile ?? enc?.keyFile;
  if (keyFile) return { kind: 'key', key: await readKeyFile(keyFile), from: `key file ${keyFile}` };
  const passFile = src.passphraseFile ?? enc?.passphraseFile;
  if (passFile) return { kind: 'passphrase', passphrase: await readPassphraseFile(passFile), from: `passphrase file ${passFile}` };
  const envName = src.passphraseEnv ?? enc?.passphraseEnv ?? DEFAULT_PASSPHRASE_ENV;
  if (src.passphraseEnv !== undefined && !env[envName]) {
    throw new AgentVaultError('encryption', `environment variable ${envName} (named for the passphrase) is not set or empty`, { kind: 'usage' });
  }
  if (env[envName]) return { kind: 'passphrase', passphrase: env[envName]!, from: `environment variable ${envName}` };
  if (src.secrets) {
    const name = enc?.secretStorageKey ?? PASSPHRASE_SECRET;
    const v = await src.secrets.get(name);
    if (v) return { kind: 'passphrase', passphrase: v, from: `VS Code secret ${name}` };
  }
  return { kind: 'none' };
}

/** For writing: an ArchiveKey (passphrase keys reuse the vault's scrypt salt and parameters). */
export async function writingKey(material: KeyMaterial, kdf: KdfDescription | null | undefined, scrypt?: Partial<ScryptParams>): Promise<{ key: ArchiveKey; kdf: KdfDescription }> {
  if (material.kind === 'none') {
    throw new AgentVaultError('no-key', 'encryption is on but no passphrase or key is available', {
      kind: 'usage',
      remedy: 'key',
      hint: `set ${DEFAULT_PASSPHRASE_ENV}, or configure encryption.passphraseFile / encryption.keyFile`,
    });
  }
  if (material.kind === 'key') return { key: material.key, kdf: material.key.kdf };
  const reuse = kdf && kdf.name === 'scrypt' && (!scrypt || ((scrypt.N ?? kdf.N) === kdf.N && (scrypt.r ?? kdf.r) === kdf.r && (scrypt.p ?? kdf.p) === kdf.p));
  try {
    const key =
      reuse && kdf.name === 'scrypt'
        ? await keyFromPassphrase(material.passphrase, { salt: kdf.salt, scrypt: { N: kdf.N, r: kdf.r, p: kdf.p } })
        : await keyFromPassphrase(material.passphrase, { scrypt });
    return { key, kdf: key.kdf };
  } catch (e) {
    if (e instanceof AgentVaultError) throw e;
    throw new AgentVaultError('encryption', `cannot derive the encryption key: ${errorMessage(e)}`, { cause: e });
  }
}

/** For reading: what openArchive needs. */
export function decryptOptions(material: KeyMaterial): DecryptOptions | undefined {
  if (material.kind === 'passphrase') return { passphrase: material.passphrase };
  if (material.kind === 'key') return { key: material.key };
  return undefined;
}
