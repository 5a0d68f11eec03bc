/**
 * Agent secrets (environment variables, `agent_environment_variables`) for encrypted exports.
 *
 * Letta keeps a variable's value in `value_enc`: base64(salt 16 ‖ iv 12 ‖ ciphertext ‖ tag 16),
 * AES-256-GCM under PBKDF2-HMAC-SHA256(LETTA_ENCRYPTION_KEY, salt, 100 000 iterations, 32 bytes)
 * — or the plain text when the server has no key configured — and writes '' into `value` (older
 * servers kept the plain value there). An export includes, per variable, the value decrypted from
 * `value_enc` when that is possible (the Letta server's key is given, or `value_enc` holds plain
 * text), else the stored `value` (with a warning when `value_enc` holds a ciphertext it cannot
 * open). A restore writes the value back into `value` and leaves `value_enc` NULL: Letta encrypts
 * with its own server key, which this tool cannot know.
 */
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from 'node:crypto';

const SALT = 16;
const IV = 12;
const TAG = 16;
const ITERATIONS = 100_000;

function derive(key: string, salt: Buffer): Buffer {
  return pbkdf2Sync(Buffer.from(key, 'utf8'), salt, ITERATIONS, 32, 'sha256');
}

/** Whether `value_enc` has the shape of Letta's ciphertext (base64 of salt, iv, data and tag). */
export function looksLikeLettaCiphertext(enc: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(enc) || enc.length % 4 !== 0) return false;
  return Buffer.from(enc, 'base64').length >= SALT + IV + TAG;
}

/** Decrypts Letta's `value_enc` with the server's key; null when it does not authenticate. */
export function decryptLettaValue(enc: string, key: string): string | null {
  if (!looksLikeLettaCiphertext(enc)) return null;
  const raw = Buffer.from(enc, 'base64');
  const salt = raw.subarray(0, SALT);
  const iv = raw.subarray(SALT, SALT + IV);
  const data = raw.subarray(SALT + IV, raw.length - TAG);
  const tag = raw.subarray(raw.length - TAG);
  try {
    const d = createDecipheriv('aes-256-gcm', derive(key, salt), iv, { authTagLength: TAG });
    d.setAuthTag(tag);
    return Buffer.concat([d.update(data), d.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/** Encrypts a value the way Letta does (for tests that play the Letta server). */
export function encryptLettaValue(plain: string, key: string): string {
  const salt = randomBytes(SALT);
  const iv = randomBytes(IV);
  const c = createCipheriv('aes-256-gcm', derive(key, salt), iv, { authTagLength: TAG });
  const data = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return Buffer.concat([salt, iv, data, c.getAuthTag()]).toString('base64');
}

/** Where an exported value came from. */
export type SecretSource = 'value_enc' | 'value';

export interface ResolvedSecret {
  value: string;
  source: SecretSource;
  /** why the value could not be taken from value_enc (null: no problem) */
  warning: string | null;
}

/**
 * The value to export for a variable: decrypted from `value_enc` when possible, else `value`.
 */
export function resolveSecretValue(row: { key: string; value: unknown; value_enc: unknown }, lettaKey: string | undefined): ResolvedSecret {
  const stored = typeof row.value === 'string' ? row.value : '';
  const enc = typeof row.value_enc === 'string' && row.value_enc !== '' ? row.value_enc : null;
  if (enc === null) return { value: stored, source: 'value', warning: null };
  if (lettaKey) {
    const plain = decryptLettaValue(enc, lettaKey);
    if (plain !== null) return { value: plain, source: 'value_enc', warning: null };
  }
  // without a key configured, Letta keeps the plain text in value_enc
  if (!looksLikeLettaCiphertext(enc)) return { value: enc, source: 'value_enc', warning: null };
  return {
    value: stored,
    source: 'value',
    warning: lettaKey
      ? `environment variable ${row.key}: value_enc does not decrypt with the given Letta key; the stored value is exported instead`
      : `environment variable ${row.key}: its value is encrypted with the Letta server's key (value_enc); set LETTA_ENCRYPTION_KEY to export it — the stored value is exported instead`,
  };
}
