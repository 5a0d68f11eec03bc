/**
 * Archive encryption (docs/FORMAT.md §9, scheme "aes-256-gcm-entry-v1"), with node:crypto only.
 *
 * Keys: a 32-byte master key comes from a passphrase (scrypt, parameters and salt recorded in the
 * manifest) or from a key file (raw). Per archive, HKDF-SHA256 with the archive's random salt
 * derives an entry key base, a manifest MAC key and a key check value. Per entry, HKDF with a
 * random entry salt derives the AES-256-GCM key of that entry.
 *
 * Entries are encrypted as a stream of 64 KiB segments (the STREAM construction): each segment is
 * sealed with AES-256-GCM under nonce = 11-byte big-endian segment counter ‖ last-segment flag,
 * with the entry header and the entry name as additional data. A reader authenticates every
 * segment before it releases its plaintext, notices truncation (no segment with the last flag),
 * extension (data after it), reordering (counter) and entry swapping (name + salt in the AAD).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { createDeflateRaw, createInflateRaw } from 'node:zlib';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError } from '../core/fs';

export const ENCRYPTION_SCHEME = 'aes-256-gcm-entry-v1' as const;
/** Plaintext bytes per segment (the last segment may be shorter). */
export const SEGMENT_SIZE = 64 * 1024;
export const TAG_SIZE = 16;
export const ENTRY_HEADER_SIZE = 24;
export const ENTRY_MAGIC = Buffer.from('AVE1', 'latin1');
/** Entry header flag: the plaintext was compressed with raw deflate before it was encrypted. */
export const FLAG_DEFLATE = 0x01;
export const KEY_BYTES = 32;
const SALT_BYTES = 16;

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
}

/** Default scrypt cost: 2^17 × 8 × 128 B = 128 MiB of memory per derivation. */
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 2 ** 17, r: 8, p: 1 });

export type KdfDescription = { name: 'scrypt'; salt: string; N: number; r: number; p: number } | { name: 'raw' };

/** The manifest's `encryption` section (docs/FORMAT.md §9). */
export interface EncryptionSection {
  scheme: typeof ENCRYPTION_SCHEME;
  kdf: KdfDescription;
  /** base64, 16 bytes: the archive's HKDF salt. */
  salt: string;
  segment_size: number;
  /** base64, 16 bytes derived from the key: tells a wrong key from damage. */
  key_check: string;
  /** raw keys: a short public fingerprint of the key (which key file it was); null for passphrases. */
  key_id: string | null;
  /** how the manifest is authenticated: HMAC-SHA256 of manifest.json's bytes, in the archive comment. */
  manifest_mac: 'hmac-sha256';
}

/**
 * A master key and how it was obtained. Make one with keyFromPassphrase(), keyFromBytes() or
 * readKeyFile(); the key bytes are not enumerable (never printed or serialised by accident).
 */
export interface ArchiveKey {
  readonly kdf: KdfDescription;
  readonly keyId: string | null;
}

const MASTER = new WeakMap<ArchiveKey, Buffer>();

function makeKey(master: Buffer, kdf: KdfDescription, keyId: string | null): ArchiveKey {
  const k: ArchiveKey = Object.freeze({ kdf, keyId });
  MASTER.set(k, master);
  return k;
}

function masterOf(key: ArchiveKey): Buffer {
  const m = MASTER.get(key);
  if (!m) throw new AgentVaultError('encryption', 'not an archive key (make one with keyFromPassphrase, keyFromBytes or readKeyFile)');
  return m;
}

function checkScrypt(p: ScryptParams, where: string): void {
  const pow2 = Number.isInteger(p.N) && p.N >= 2 && (p.N & (p.N - 1)) === 0;
  if (!pow2 || p.N > 2 ** 24) throw new AgentVaultError('encryption', `${where}: scrypt N must be a power of two between 2 and 2^24, got ${p.N}`);
  if (!Number.isInteger(p.r) || p.r < 1 || p.r > 64) throw new AgentVaultError('encryption', `${where}: scrypt r must be an integer between 1 and 64, got ${p.r}`);
  if (!Number.isInteger(p.p) || p.p < 1 || p.p > 16) throw new AgentVaultError('encryption', `${where}: scrypt p must be an integer between 1 and 16, got ${p.p}`);
}

/** Derived passphrase keys, so that many archives sharing one scrypt salt cost one derivation. */
const scryptCache = new Map<string, Buffer>();

/** Forgets every cached passphrase-derived key. */
export function clearKeyCache(): void {
  for (const b of scryptCache.values()) b.fill(0);
  scryptCache.clear();
}

async function runScrypt(passphrase: string, salt: Buffer, p: ScryptParams): Promise<Buffer> {
  const pass = Buffer.from(passphrase.normalize('NFC'), 'utf8');
  const cacheKey = createHash('sha256').update(pass).update(salt).update(`${p.N}/${p.r}/${p.p}`).digest('hex');
  const hit = scryptCache.get(cacheKey);
  if (hit) return Buffer.from(hit);
  const maxmem = 128 * p.N * p.r * p.p + 64 * 1024 * 1024;
  const out = await new Promise<Buffer>((resolve, reject) => scryptCb(pass, salt, KEY_BYTES, { N: p.N, r: p.r, p: p.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key))));
  scryptCache.set(cacheKey, Buffer.from(out));
  return out;
}

/**
 * A key from a passphrase: scrypt with `salt` (random when not given; pass a stored one so that
 * several archives share one derivation) and `scrypt` parameters (default DEFAULT_SCRYPT).
 */
export async function keyFromPassphrase(passphrase: string, opts: { salt?: Buffer | string; scrypt?: Partial<ScryptParams> } = {}): Promise<ArchiveKey> {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw new AgentVaultError('encryption', 'the passphrase is empty');
  const params: ScryptParams = { ...DEFAULT_SCRYPT, ...opts.scrypt };
  checkScrypt(params, 'passphrase key');
  const salt = opts.salt === undefined ? randomBytes(SALT_BYTES) : typeof opts.salt === 'string' ? Buffer.from(opts.salt, 'base64') : opts.salt;
  if (salt.length < 8) throw new AgentVaultError('encryption', `the scrypt salt must be at least 8 bytes, got ${salt.length}`);
  const master = await runScrypt(passphrase, salt, params);
  return makeKey(master, { name: 'scrypt', salt: salt.toString('base64'), N: params.N, r: params.r, p: params.p }, null);
}

/** A public fingerprint of a raw key (16 hex digits), recorded as `key_id`. */
function rawKeyId(master: Buffer): string {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'agent-vault/key-id', 8)).toString('hex');
}

/** A key from 32 raw bytes (e.g. the content of a key file). */
export function keyFromBytes(bytes: Buffer | Uint8Array, where = 'key'): ArchiveKey {
  const b = Buffer.from(bytes);
  if (b.length !== KEY_BYTES) throw new AgentVaultError('encryption', `${where}: an encryption key must be exactly ${KEY_BYTES} bytes, got ${b.length}`);
  return makeKey(b, { name: 'raw' }, rawKeyId(b));
}

/**
 * Reads a key file: 32 raw bytes, or the key as 64 hexadecimal digits or as base64 (surrounding
 * white space ignored).
 */
export async function readKeyFile(file: string): Promise<ArchiveKey> {
  let buf: Buffer;
  try {
    const st = await fsp.stat(file);
    if (st.size > 4096) throw new AgentVaultError('encryption', `key file ${file} is ${st.size} bytes; a key file holds 32 bytes (raw, hex or base64)`, { location: { file } });
    buf = await fsp.readFile(file);
  } catch (e) {
    throw ioError(e, file, 'read');
  }
  return keyFromBytes(decodeKeyText(buf, file), `key file ${file}`);
}

function decodeKeyText(buf: Buffer, file: string): Buffer {
  if (buf.length === KEY_BYTES) return buf;
  const text = buf.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    const b = Buffer.from(text, 'base64');
    if (b.length === KEY_BYTES) return b;
  }
  throw new AgentVaultError('encryption', `key file ${file} does not hold a ${KEY_BYTES}-byte key (expected ${KEY_BYTES} raw bytes, 64 hex digits or base64)`, {
    location: { file },
    hint: 'create one with: head -c 32 /dev/urandom > vault.key && chmod 600 vault.key',
  });
}

/** 32 random bytes as hex, for a new key file. */
export function generateKeyText(): string {
  return randomBytes(KEY_BYTES).toString('hex') + '\n';
}

// ---------------------------------------------------------------------------------------------
// per-archive keys

const INFO = {
  entries: `agent-vault/${ENCRYPTION_SCHEME}/entries`,
  mac: `agent-vault/${ENCRYPTION_SCHEME}/manifest-mac`,
  check: `agent-vault/${ENCRYPTION_SCHEME}/key-check`,
  entry: `agent-vault/${ENCRYPTION_SCHEME}/entry`,
};

function hkdf(ikm: Buffer, salt: Buffer, info: string, len: number): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, len));
}

/** The keys of one archive. */
export class ArchiveCrypto {
  private readonly entryBase: Buffer;
  private readonly macKey: Buffer;
  readonly keyCheck: Buffer;

  constructor(
    master: Buffer,
    readonly salt: Buffer,
    readonly kdf: KdfDescription,
    readonly keyId: string | null,
  ) {
    this.entryBase = hkdf(master, salt, INFO.entries, KEY_BYTES);
    this.macKey = hkdf(master, salt, INFO.mac, KEY_BYTES);
    this.keyCheck = hkdf(master, salt, INFO.check, 16);
  }

  /** For a new archive: a fresh random archive salt. */
  static forWriting(key: ArchiveKey): ArchiveCrypto {
    return new ArchiveCrypto(masterOf(key), randomBytes(SALT_BYTES), key.kdf, key.keyId);
  }

  section(): EncryptionSection {
    return {
      scheme: ENCRYPTION_SCHEME,
      kdf: { ...this.kdf },
      salt: this.salt.toString('base64'),
      segment_size: SEGMENT_SIZE,
      key_check: this.keyCheck.toString('base64'),
      key_id: this.keyId,
      manifest_mac: 'hmac-sha256',
    };
  }

  manifestMac(manifestBytes: Buffer): string {
    return createHmac('sha256', this.macKey).update(manifestBytes).digest('hex');
  }

  verifyManifestMac(manifestBytes: Buffer, macHex: string): boolean {
    const want = Buffer.from(this.manifestMac(manifestBytes), 'hex');
    const got = /^[0-9a-f]{64}$/.test(macHex) ? Buffer.from(macHex, 'hex') : Buffer.alloc(0);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  entryKey(entrySalt: Buffer): Buffer {
    return hkdf(this.entryBase, entrySalt, INFO.entry, KEY_BYTES);
  }

  encryptor(name: string, opts: { deflate: boolean }): Transform {
    return new EntryEncryptor(this, name, opts.deflate ? FLAG_DEFLATE : 0);
  }

  decryptor(name: string, file: string): EntryDecryptor {
    return new EntryDecryptor(this, name, file);
  }
}

/** What to do about an encrypted archive without its key, in words every front end can show. */
export const KEY_OPTIONS_HINT = 'give the passphrase or key it was written with';

/** An encrypted archive was given without its passphrase or key (kind 'usage'). */
export function noKeyError(file: string, doing = 'nothing was read or changed'): AgentVaultError {
  return new AgentVaultError('no-key', `${file} is encrypted and no passphrase or key was given; ${doing}. To read it, ${KEY_OPTIONS_HINT}.`, {
    location: { file },
    kind: 'usage',
    remedy: 'key',
    hint: 'AGENT_VAULT_PASSPHRASE is read too when it is set',
  });
}

/** What a reader is given to open an encrypted archive. */
export interface DecryptOptions {
  passphrase?: string;
  /** A key made by keyFromBytes/readKeyFile (or keyFromPassphrase: then its kdf must match), or 32 raw bytes. */
  key?: ArchiveKey | Buffer | Uint8Array;
  /** Refuse an archive that is not encrypted (error 'not-encrypted'). */
  requireEncrypted?: boolean;
}

function b64(v: unknown, what: string, file: string, len?: number): Buffer {
  const b = typeof v === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(v) ? Buffer.from(v, 'base64') : undefined;
  if (!b || b.length === 0 || (len !== undefined && b.length !== len)) {
    throw new AgentVaultError('manifest', `${file}: manifest "encryption.${what}" is not valid base64${len ? ` of ${len} bytes` : ''}`, {
      location: { file, entry: 'manifest.json', pointer: `/encryption/${what.replace(/\./g, '/')}` },
    });
  }
  return b;
}

/** Reads and checks the manifest's `encryption` section (shape only; the key is checked later). */
export function parseEncryptionSection(value: unknown, file: string): EncryptionSection {
  const where = { file, entry: 'manifest.json', pointer: '/encryption' };
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new AgentVaultError('manifest', `${file}: manifest "encryption" must be an object`, { location: where });
  const s = value as Record<string, unknown>;
  if (s.scheme !== ENCRYPTION_SCHEME) {
    throw new AgentVaultError('unsupported-encryption', `${file}: encryption scheme ${JSON.stringify(s.scheme)} is not supported (this Agent Vault knows "${ENCRYPTION_SCHEME}")`, {
      location: where,
      hint: 'install a newer Agent Vault',
    });
  }
  if (s.segment_size !== SEGMENT_SIZE)
    throw new AgentVaultError('unsupported-encryption', `${file}: encryption segment_size ${JSON.stringify(s.segment_size)} is not supported (expected ${SEGMENT_SIZE})`, { location: where });
  if (s.manifest_mac !== 'hmac-sha256')
    throw new AgentVaultError('unsupported-encryption', `${file}: manifest authentication ${JSON.stringify(s.manifest_mac)} is not supported (expected "hmac-sha256")`, { location: where });
  const kdf = s.kdf as Record<string, unknown> | undefined;
  let k: KdfDescription;
  if (kdf?.name === 'raw') k = { name: 'raw' };
  else if (kdf?.name === 'scrypt') {
    const params = { N: Number(kdf.N), r: Number(kdf.r), p: Number(kdf.p) };
    checkScrypt(params, `${file}: manifest "encryption.kdf"`);
    b64(kdf.salt, 'kdf.salt', file);
    k = { name: 'scrypt', salt: kdf.salt as string, ...params };
  } else throw new AgentVaultError('unsupported-encryption', `${file}: key derivation ${JSON.stringify(kdf?.name)} is not supported (expected "scrypt" or "raw")`, { location: where });
  b64(s.salt, 'salt', file, SALT_BYTES);
  b64(s.key_check, 'key_check', file, 16);
  return {
    scheme: ENCRYPTION_SCHEME,
    kdf: k,
    salt: s.salt as string,
    segment_size: SEGMENT_SIZE,
    key_check: s.key_check as string,
    key_id: typeof s.key_id === 'string' ? s.key_id : null,
    manifest_mac: 'hmac-sha256',
  };
}

/**
 * The keys of an existing archive from what the user gave. A wrong passphrase or key is error
 * 'wrong-key' (told apart from damage by the key check value); a passphrase for a key-file
 * archive (or the reverse) is 'wrong-key' too, with a message saying which one is needed.
 */
export async function openArchiveCrypto(section: EncryptionSection, decrypt: DecryptOptions, file: string): Promise<ArchiveCrypto> {
  const loc = { file, entry: 'manifest.json', pointer: '/encryption' };
  let master: Buffer;
  const kdf = section.kdf;
  if (kdf.name === 'scrypt') {
    if (decrypt.passphrase === undefined) {
      const givenKey = decrypt.key !== undefined && !Buffer.isBuffer(decrypt.key) && !(decrypt.key instanceof Uint8Array) ? (decrypt.key as ArchiveKey) : undefined;
      if (givenKey && givenKey.kdf.name === 'scrypt' && givenKey.kdf.salt === kdf.salt && givenKey.kdf.N === kdf.N && givenKey.kdf.r === kdf.r && givenKey.kdf.p === kdf.p) {
        master = masterOf(givenKey);
      } else {
        throw new AgentVaultError('wrong-key', `${file} is encrypted with a passphrase; a key file cannot open it`, {
          location: loc,
          remedy: 'key',
          hint: 'give the passphrase (e.g. AGENT_VAULT_PASSPHRASE)',
        });
      }
    } else {
      try {
        master = await runScrypt(decrypt.passphrase, Buffer.from(kdf.salt, 'base64'), kdf);
      } catch (e) {
        throw new AgentVaultError('encryption', `${file}: cannot derive the key from the passphrase: ${errorMessage(e)}`, { location: loc, cause: e });
      }
    }
  } else {
    if (decrypt.key === undefined) {
      throw new AgentVaultError('wrong-key', `${file} is encrypted with a key file; a passphrase cannot open it`, { location: loc, remedy: 'key', hint: 'give the key file' });
    }
    const k = decrypt.key;
    master = Buffer.isBuffer(k) || k instanceof Uint8Array ? masterOf(keyFromBytes(k)) : masterOf(k as ArchiveKey);
  }
  const c = new ArchiveCrypto(master, Buffer.from(section.salt, 'base64'), kdf, section.key_id);
  const want = Buffer.from(section.key_check, 'base64');
  if (want.length !== c.keyCheck.length || !timingSafeEqual(want, c.keyCheck)) {
    const what = kdf.name === 'scrypt' ? 'wrong passphrase' : 'wrong key';
    throw new AgentVaultError('wrong-key', `${file}: ${what}: the archive cannot be decrypted with it${section.key_id ? ` (it was written with key ${section.key_id})` : ''}`, {
      location: loc,
      hint: kdf.name === 'scrypt' ? 'check the passphrase (environment variable, file or stored secret)' : 'check that the key file is the one the vault was written with',
    });
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// segmented AES-256-GCM

function nonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  // 11-byte big-endian counter: the low 6 bytes are enough for any real entry (2^48 × 64 KiB)
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

function sealSegment(key: Buffer, aad: Buffer, counter: number, last: boolean, plain: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce(counter, last), { authTagLength: TAG_SIZE });
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([body, c.getAuthTag()]);
}

/** plaintext in → entry bytes out (header ‖ sealed segments). */
class EntryEncryptor extends Transform {
  private readonly key: Buffer;
  private readonly aad: Buffer;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private counter = 0;
  private readonly deflate: Transform | undefined;

  constructor(crypto: ArchiveCrypto, name: string, flags: number) {
    super();
    const salt = randomBytes(SALT_BYTES);
    const header = Buffer.alloc(ENTRY_HEADER_SIZE);
    ENTRY_MAGIC.copy(header, 0);
    header[4] = flags;
    salt.copy(header, 8);
    this.key = crypto.entryKey(salt);
    this.aad = Buffer.concat([header, Buffer.from(name, 'utf8')]);
    this.push(header);
    if (flags & FLAG_DEFLATE) {
      this.deflate = createDeflateRaw({ level: 6 });
      this.deflate.on('data', (c: Buffer) => this.accept(c));
    }
  }

  private accept(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingLen += chunk.length;
    // a segment is sealed as not-last only once at least one more byte is known to follow
    while (this.pendingLen > SEGMENT_SIZE) {
      const all = Buffer.concat(this.pending);
      this.push(sealSegment(this.key, this.aad, this.counter++, false, all.subarray(0, SEGMENT_SIZE)));
      const rest = all.subarray(SEGMENT_SIZE);
      this.pending = [rest];
      this.pendingLen = rest.length;
    }
  }

  override _transform(chunk: Buffer | string, _enc: BufferEncoding, cb: TransformCallback): void {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (!this.deflate) {
      this.accept(b);
      cb();
      return;
    }
    if (this.deflate.write(b)) cb();
    else this.deflate.once('drain', () => cb());
  }

  override _flush(cb: TransformCallback): void {
    const finish = (): void => {
      this.push(sealSegment(this.key, this.aad, this.counter++, true, Buffer.concat(this.pending)));
      this.pending = [];
      cb();
    };
    if (!this.deflate) return finish();
    this.deflate.once('error', (e) => cb(e));
    this.deflate.once('end', finish);
    this.deflate.end();
  }
}

/** Errors of decryption: the entry was altered (or is not what the manifest says). */
export function decryptError(file: string, entry: string, why: string): AgentVaultError {
  return new AgentVaultError('decrypt', `${file}: entry ${JSON.stringify(entry)} failed authentication: ${why}`, {
    location: { file, entry },
    hint: 'the encrypted data was altered or damaged after it was written; use another copy',
  });
}

/** entry bytes in → plaintext out; every segment is authenticated before it is released. */
export class EntryDecryptor extends Transform {
  private key: Buffer | undefined;
  private aad: Buffer | undefined;
  private flags = 0;
  private buf: Buffer = Buffer.alloc(0);
  private counter = 0;
  private inflate: Transform | undefined;
  private inflateDone: Promise<void> | undefined;

  constructor(
    private readonly crypto: ArchiveCrypto,
    private readonly entryName: string,
    private readonly file: string,
  ) {
    super();
  }

  private fail(why: string): AgentVaultError {
    return decryptError(this.file, this.entryName, why);
  }

  private open(segment: Buffer, last: boolean): Buffer {
    if (segment.length < TAG_SIZE) throw this.fail(`segment ${this.counter} is shorter than its authentication tag`);
    const body = segment.subarray(0, segment.length - TAG_SIZE);
    const tag = segment.subarray(segment.length - TAG_SIZE);
    const d = createDecipheriv('aes-256-gcm', this.key!, nonce(this.counter, last), { authTagLength: TAG_SIZE });
    d.setAAD(this.aad!);
    d.setAuthTag(tag);
    try {
      const out = Buffer.concat([d.update(body), d.final()]);
      this.counter++;
      return out;
    } catch {
      throw this.fail(
        last
          ? `segment ${this.counter} (the last) does not authenticate: the ciphertext was altered, truncated or extended`
          : `segment ${this.counter} does not authenticate: the ciphertext was altered`,
      );
    }
  }

  private release(plain: Buffer, cb: () => void): void {
    if (!this.inflate) {
      if (plain.length) this.push(plain);
      cb();
      return;
    }
    if (this.inflate.write(plain)) cb();
    else this.inflate.once('drain', cb);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      if (!this.key) {
        if (this.buf.length < ENTRY_HEADER_SIZE) return cb();
        const header = this.buf.subarray(0, ENTRY_HEADER_SIZE);
        if (!header.subarray(0, 4).equals(ENTRY_MAGIC)) throw this.fail('it does not start with the encrypted-entry header ("AVE1")');
        this.flags = header[4];
        if (this.flags & ~FLAG_DEFLATE || header[5] || header[6] || header[7]) throw this.fail(`its header has unknown flags (${header.subarray(4, 8).toString('hex')})`);
        this.key = this.crypto.entryKey(Buffer.from(header.subarray(8, 24)));
        this.aad = Buffer.concat([header, Buffer.from(this.entryName, 'utf8')]);
        if (this.flags & FLAG_DEFLATE) {
          const inf = createInflateRaw();
          this.inflate = inf;
          inf.on('data', (c: Buffer) => this.push(c));
          this.inflateDone = new Promise<void>((resolve, reject) => {
            inf.once('end', resolve);
            inf.once('error', (e) => reject(this.fail(`its authenticated content does not decompress (${errorMessage(e)})`)));
          });
          this.inflateDone.catch(() => undefined);
        }
        this.buf = this.buf.subarray(ENTRY_HEADER_SIZE);
      }
      const full = SEGMENT_SIZE + TAG_SIZE;
      const plains: Buffer[] = [];
      while (this.buf.length > full) {
        plains.push(this.open(this.buf.subarray(0, full), false));
        this.buf = this.buf.subarray(full);
      }
      if (plains.length === 0) return cb();
      this.release(plains.length === 1 ? plains[0] : Buffer.concat(plains), () => cb());
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (!this.key) throw this.fail('it is shorter than the encrypted-entry header');
      const plain = this.open(this.buf, true);
      this.buf = Buffer.alloc(0);
      this.release(plain, () => {
        if (!this.inflate) return cb();
        this.inflate.end();
        this.inflateDone!.then(
          () => cb(),
          (e: Error) => cb(e),
        );
      });
    } catch (e) {
      cb(e as Error);
    }
  }
}

/** Encrypts a whole buffer (for small entries and tests). */
export async function encryptBuffer(crypto: ArchiveCrypto, name: string, plain: Buffer, deflate = false): Promise<Buffer> {
  return collectTransform(crypto.encryptor(name, { deflate }), plain);
}

/** Decrypts a whole entry (for small entries and tests). */
export async function decryptBuffer(crypto: ArchiveCrypto, name: string, data: Buffer, file = 'archive'): Promise<Buffer> {
  return collectTransform(crypto.decryptor(name, file), data);
}

function collectTransform(t: Transform, input: Buffer): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    t.on('data', (c: Buffer) => chunks.push(c));
    t.once('end', () => resolve(Buffer.concat(chunks)));
    t.once('error', reject);
    t.end(input);
  });
}

// ---------------------------------------------------------------------------------------------
// whole-buffer, synchronous form of the same entry format (the deduplicating store seals many
// small blobs; a Transform per blob would cost more than the sealing itself)

/**
 * Seals `payload` as one encrypted entry named `name` (§9.3), synchronously. With `deflated`,
 * `payload` must already be raw-deflated and the header's deflate flag is set. Byte for byte the
 * format EntryEncryptor writes, so decryptor()/decryptBuffer() read it.
 */
export function encryptEntrySync(crypto: ArchiveCrypto, name: string, payload: Buffer, deflated = false): Buffer {
  const salt = randomBytes(SALT_BYTES);
  const header = Buffer.alloc(ENTRY_HEADER_SIZE);
  ENTRY_MAGIC.copy(header, 0);
  header[4] = deflated ? FLAG_DEFLATE : 0;
  salt.copy(header, 8);
  const key = crypto.entryKey(salt);
  const aad = Buffer.concat([header, Buffer.from(name, 'utf8')]);
  const parts: Buffer[] = [header];
  let counter = 0;
  let off = 0;
  while (payload.length - off > SEGMENT_SIZE) {
    parts.push(sealSegment(key, aad, counter++, false, payload.subarray(off, off + SEGMENT_SIZE)));
    off += SEGMENT_SIZE;
  }
  parts.push(sealSegment(key, aad, counter, true, payload.subarray(off)));
  return Buffer.concat(parts);
}

/**
 * Opens an entry sealed by encryptEntrySync (or EntryEncryptor) under `name`: authenticates every
 * segment (error 'decrypt' naming `file` and `name` otherwise) and returns the payload and
 * whether it is raw-deflated (the caller inflates).
 */
export function decryptEntrySync(crypto: ArchiveCrypto, name: string, data: Buffer, file: string): { payload: Buffer; deflated: boolean } {
  if (data.length < ENTRY_HEADER_SIZE + TAG_SIZE) throw decryptError(file, name, 'it is shorter than the encrypted-entry header and one tag');
  const header = data.subarray(0, ENTRY_HEADER_SIZE);
  if (!header.subarray(0, 4).equals(ENTRY_MAGIC)) throw decryptError(file, name, 'it does not start with the encrypted-entry header ("AVE1")');
  const flags = header[4];
  if (flags & ~FLAG_DEFLATE || header[5] || header[6] || header[7]) throw decryptError(file, name, `its header has unknown flags (${header.subarray(4, 8).toString('hex')})`);
  const key = crypto.entryKey(Buffer.from(header.subarray(8, 24)));
  const aad = Buffer.concat([header, Buffer.from(name, 'utf8')]);
  const full = SEGMENT_SIZE + TAG_SIZE;
  const out: Buffer[] = [];
  let off = ENTRY_HEADER_SIZE;
  let counter = 0;
  const open = (seg: Buffer, last: boolean): Buffer => {
    const d = createDecipheriv('aes-256-gcm', key, nonce(counter, last), { authTagLength: TAG_SIZE });
    d.setAAD(aad);
    d.setAuthTag(seg.subarray(seg.length - TAG_SIZE));
    try {
      return Buffer.concat([d.update(seg.subarray(0, seg.length - TAG_SIZE)), d.final()]);
    } catch {
      throw decryptError(file, name, `segment ${counter}${last ? ' (the last)' : ''} does not authenticate: the ciphertext was altered, truncated or extended`);
    }
  };
  while (data.length - off > full) {
    out.push(open(data.subarray(off, off + full), false));
    off += full;
    counter++;
  }
  const lastSeg = data.subarray(off);
  if (lastSeg.length < TAG_SIZE) throw decryptError(file, name, `segment ${counter} (the last) is shorter than its authentication tag`);
  out.push(open(lastSeg, true));
  return { payload: out.length === 1 ? out[0] : Buffer.concat(out), deflated: (flags & FLAG_DEFLATE) !== 0 };
}
