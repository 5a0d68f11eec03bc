/**
 * A vault in an S3-compatible bucket (AWS S3, MinIO, Backblaze B2, Wasabi, Cloudflare R2, …),
 * through the official AWS SDK v3: `@aws-sdk/client-s3` for requests (signing, retries with
 * backoff on 5xx, throttling and connection resets) and `@aws-sdk/lib-storage` for streaming
 * multipart uploads (parts of 8 MiB, at most 4 in flight: memory stays bounded whatever the size).
 *
 * Location: `s3://<bucket>[/<prefix>][?endpoint=<url>&region=<region>&path-style=true]`.
 * Credentials come only from the AWS SDK's standard chain (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws files, instance roles); they
 * are never part of the location or the vault config, and never printed.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { AgentVaultError, errorMessage } from '../../core/errors';
import { isS3Location, parseS3Location, type S3Location } from './location';
import { LocalStore, streamToFileAtomic, type ObjectInfo, type ObjectStore } from './store';

export { isS3Location, parseS3Location, type S3Location } from './location';

// The pinned SDK runs on Node 20 (engines >=20); its notice that releases after January 2027 need
// Node 22 would otherwise be printed by every command that touches S3.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/**
 * Time limits of every request to the bucket. Without them a connection that stops answering (a
 * server that sends part of a body and then nothing, a half-open TCP connection behind a NAT that
 * dropped it) keeps a command waiting for ever with no CPU used: the SDK sets no limit of its own.
 * A request that meets one fails with a TimeoutError, which the SDK retries (the response had not
 * started) or this store does (the body was under way: readRange, readBytes, downloadFile).
 * Mutable for tests.
 */
export const s3Timings: { connectMs: number; idleMs: number } = {
  /** to open the TCP connection */
  connectMs: 30_000,
  /** with no byte sent or received on the connection while a request is under way */
  idleMs: 120_000,
};

export interface S3StoreOptions {
  /** Attempts per request, including the first (default 5): backoff on 5xx, throttling, resets. */
  maxAttempts?: number;
  /** Multipart part size in bytes (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts in flight (default 4). */
  queueSize?: number;
  /** Use conditional writes (If-None-Match: *) for the lock (default true). */
  conditionalWrites?: boolean;
}

/** Maps an S3 failure to an error that names the bucket and key, never a credential. */
export function s3Error(e: unknown, loc: S3Location, key: string | null, doing: string): AgentVaultError {
  if (e instanceof AgentVaultError) return e;
  const where = `s3://${loc.bucket}/${key === null ? loc.prefix : loc.prefix + key}`;
  const name = (e as { name?: string })?.name ?? '';
  const status = (e as S3ServiceException)?.$metadata?.httpStatusCode;
  const auth = ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError', 'InvalidClientTokenId'];
  if (auth.includes(name) || status === 403 || /Could not load credentials/i.test(errorMessage(e))) {
    return new AgentVaultError('s3-auth', `${doing} ${where}: the bucket "${loc.bucket}" refused the credentials (${name || `HTTP ${status}`})`, {
      hint: 'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the bucket policy',
      kind: 'connection',
      cause: e,
    });
  }
  if (name === 'NoSuchBucket') {
    return new AgentVaultError('s3-no-bucket', `${doing} ${where}: the bucket "${loc.bucket}" does not exist${loc.endpoint ? ` at ${loc.endpoint}` : ''}`, {
      hint: 'create it (with versioning on) or check the location',
      kind: 'usage',
      cause: e,
    });
  }
  if (name === 'AbortError') return new AgentVaultError('interrupted', `${doing} ${where} was cancelled`, { cause: e });
  if (/checksum mismatch/i.test(errorMessage(e))) {
    return new AgentVaultError('checksum', `${doing} ${where}: the bytes received do not match the object's x-amz-checksum-sha256 (damaged on the way or in the bucket): ${errorMessage(e)}`, {
      hint: 'run "agent-vault verify" on the vault; copy the snapshot again from another vault with "agent-vault vault copy"',
      cause: e,
    });
  }
  if (name === 'BadDigest' || name === 'InvalidDigest' || name === 'XAmzContentSHA256Mismatch') {
    return new AgentVaultError(
      'checksum',
      `${doing} ${where}: the server refused the bytes, their checksum did not match the x-amz-checksum-sha256 sent with them (${name}: damaged on the way); nothing of it was stored`,
      { kind: 'connection', cause: e },
    );
  }
  const net = (e as NodeJS.ErrnoException)?.code;
  const what = net ? `${net}` : name ? `${name}${status ? ` (HTTP ${status})` : ''}` : errorMessage(e);
  return new AgentVaultError('s3-io', `${doing} ${where} failed: ${what}: ${errorMessage(e)}`, { kind: 'connection', cause: e });
}

/** A failure while a response body was read that another attempt may not meet: the link dropped, or the bytes were damaged on the way. */
function transientBodyError(e: unknown): boolean {
  if (e instanceof AgentVaultError) return false;
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  return (
    (e as { name?: string })?.name === 'TimeoutError' ||
    ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE'].includes(code) ||
    /aborted|socket hang up|premature close|checksum mismatch|timed out/i.test(errorMessage(e))
  );
}

/** The pause before attempt `attempt + 1` of a read whose body failed (exponential, jittered, at most 5 s). */
function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2)));
}

/** A response body that failed in a way another attempt may not meet (see S3Store.body). */
class BodyFailed extends Error {
  constructor(readonly failure: unknown) {
    super(errorMessage(failure));
  }
}

export class S3Store implements ObjectStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;
  readonly loc: S3Location;
  private readonly opts: Required<S3StoreOptions>;

  constructor(location: string | S3Location, opts: S3StoreOptions = {}) {
    this.loc = typeof location === 'string' ? parseS3Location(location) : location;
    this.opts = { maxAttempts: 5, partSize: 8 * 1024 * 1024, queueSize: 4, conditionalWrites: true, ...opts };
    this.client = new S3Client({
      endpoint: this.loc.endpoint,
      region: this.loc.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: this.loc.pathStyle ?? !!this.loc.endpoint,
      maxAttempts: this.opts.maxAttempts,
      retryMode: 'standard',
      // send a checksum only where the operation needs one; responses are validated when present
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_SUPPORTED',
      // no request waits for ever on a connection that stopped answering (s3Timings)
      requestHandler: { connectionTimeout: s3Timings.connectMs, socketTimeout: s3Timings.idleMs },
    });
  }

  get location(): string {
    return this.loc.display;
  }

  private k(key: string): string {
    return this.loc.prefix + key;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let r;
      try {
        r = await this.client.send(new ListObjectsV2Command({ Bucket: this.loc.bucket, Prefix: this.k(prefix), ContinuationToken: token }));
      } catch (e) {
        throw s3Error(e, this.loc, prefix, 'listing');
      }
      for (const o of r.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: o.Key.slice(this.loc.prefix.length), size: Number(o.Size ?? 0), lastModified: o.LastModified };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key), ChecksumMode: 'ENABLED' }));
      const meta = r.Metadata?.['agent-vault-sha256'];
      return { key, size: Number(r.ContentLength ?? 0), lastModified: r.LastModified, sha256Hex: meta && /^[0-9a-f]{64}$/.test(meta) ? meta : undefined };
    } catch (e) {
      if ((e as { name?: string }).name === 'NotFound' || (e as S3ServiceException).$metadata?.httpStatusCode === 404) {
        // a HEAD on a missing bucket also answers 404: tell them apart
        if ((e as { name?: string }).name === 'NoSuchBucket') throw s3Error(e, this.loc, key, 'reading');
        return null;
      }
      throw s3Error(e, this.loc, key, 'reading');
    }
  }

  async readBytes(key: string): Promise<Buffer | null> {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key) }));
        return Buffer.from(await this.body(r.Body!, attempt));
      } catch (e) {
        if (e instanceof BodyFailed) {
          await backoff(attempt);
          continue;
        }
        if ((e as { name?: string }).name === 'NoSuchKey') return null;
        throw s3Error(e, this.loc, key, 'reading');
      }
    }
  }

  /**
   * A response body's bytes. The SDK retries a request until its response starts; a body cut off,
   * stalled (s3Timings.idleMs) or damaged on the way fails later, here: BodyFailed while another
   * attempt is left (the caller sends the request again), else the error itself.
   */
  private async body(b: { transformToByteArray(): Promise<Uint8Array> }, attempt: number): Promise<Uint8Array> {
    try {
      return await b.transformToByteArray();
    } catch (e) {
      if (transientBodyError(e) && attempt < this.opts.maxAttempts) throw new BodyFailed(e);
      throw e;
    }
  }

  async readStream(key: string): Promise<Readable> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key) }));
      return r.Body as Readable;
    } catch (e) {
      throw s3Error(e, this.loc, key, 'reading');
    }
  }

  async readRange(key: string, start: number, length: number): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key), Range: `bytes=${start}-${start + length - 1}` }));
        const bytes = await this.body(r.Body!, attempt);
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength); // no copy
      } catch (e) {
        if (e instanceof BodyFailed) {
          await backoff(attempt);
          continue;
        }
        if ((e as { name?: string }).name === 'InvalidRange') return Buffer.alloc(0);
        throw s3Error(e, this.loc, key, 'reading');
      }
    }
  }

  async writeBytes(key: string, data: Buffer | string, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    if (opts.ifAbsent && !this.opts.conditionalWrites) {
      throw new AgentVaultError('s3-no-conditional-put', `${this.loc.display}: conditional writes are switched off for this store, so ${key} cannot be created exclusively`, { kind: 'usage' });
    }
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key), Body: data, ChecksumAlgorithm: 'SHA256', IfNoneMatch: opts.ifAbsent ? '*' : undefined }));
      return true;
    } catch (e) {
      const status = (e as S3ServiceException).$metadata?.httpStatusCode;
      // 412: another writer's object is there; 409 ConditionalRequestConflict: a racing write
      if (opts.ifAbsent && (status === 412 || status === 409)) return false;
      if (opts.ifAbsent && status === 501) {
        throw new AgentVaultError('s3-no-conditional-put', `${this.loc.display}: the server does not support conditional writes (If-None-Match: *), so ${key} cannot be created exclusively`, {
          hint: 'see docs/VAULT.md "Object storage": without conditional writes two concurrent runs are not kept apart',
          kind: 'usage',
          cause: e,
        });
      }
      throw s3Error(e, this.loc, key, 'writing');
    }
  }

  async uploadFile(key: string, file: string, opts: { sha256Hex: string; signal?: AbortSignal }): Promise<void> {
    const up = new Upload({
      client: this.client,
      // the whole file's SHA-256 rides along as metadata (S3's own SHA-256 of a multipart object is a
      // checksum of part checksums); every part is checked by the server on arrival
      params: { Bucket: this.loc.bucket, Key: this.k(key), Body: createReadStream(file), ChecksumAlgorithm: 'SHA256', Metadata: { 'agent-vault-sha256': opts.sha256Hex } },
      partSize: this.opts.partSize,
      queueSize: this.opts.queueSize,
      // on failure the SDK aborts the multipart upload: no orphaned parts, nothing visible
      leavePartsOnError: false,
    });
    if (opts.signal?.aborted) throw new AgentVaultError('interrupted', `uploading to s3://${this.loc.bucket}/${this.k(key)} was cancelled before it started`);
    const onAbort = (): void => void up.abort().catch(() => undefined);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await up.done();
    } catch (e) {
      // the SDK aborts the multipart upload on a failure, but on a cancel its done() rejects before
      // that request is sent: abort it here, and wait for it, so a process that exits next leaves
      // no orphaned parts (any upload of this very key is this run's: snapshot ids are unique)
      await this.abortUploads(key, up.uploadId).catch(() => undefined);
      throw s3Error(e, this.loc, key, 'uploading to');
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Aborts the multipart uploads of exactly `key` (and `uploadId`, when known). */
  private async abortUploads(key: string, uploadId: string | undefined): Promise<void> {
    const Key = this.k(key);
    const ids = new Set<string>(uploadId ? [uploadId] : []);
    const r = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.loc.bucket, Prefix: Key }));
    for (const u of r.Uploads ?? []) if (u.Key === Key && u.UploadId) ids.add(u.UploadId);
    for (const UploadId of ids) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.loc.bucket, Key, UploadId })).catch((e) => {
        if ((e as { name?: string }).name !== 'NoSuchUpload') throw e;
      });
    }
  }

  /**
   * The SDK retries a request until its response starts; a body cut off or damaged on the way
   * (connection reset, x-amz-checksum-sha256 mismatch) fails later, while it is read. Such a
   * download is started again (with backoff, up to `maxAttempts` in all); the file is written
   * whole or not at all each time.
   */
  async downloadFile(key: string, file: string, opts: { signal?: AbortSignal } = {}): Promise<{ sha256Hex: string; bytes: number }> {
    for (let attempt = 1; ; attempt++) {
      const body = await this.readStream(key);
      try {
        return await streamToFileAtomic(body, file, opts.signal);
      } catch (e) {
        const cause = e instanceof AgentVaultError && e.code === 'io' ? ((e as Error).cause ?? e) : e;
        const mapped = cause instanceof AgentVaultError ? cause : s3Error(cause, this.loc, key, 'downloading');
        if (!transientBodyError(cause) || attempt >= this.opts.maxAttempts || opts.signal?.aborted) throw mapped;
        await backoff(attempt);
      }
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.loc.bucket, Key: this.k(key) }));
    } catch (e) {
      throw s3Error(e, this.loc, key, 'deleting');
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** Opens the store a vault location names: `s3://…` or a local folder. */
export async function openObjectStore(location: string, opts: S3StoreOptions = {}): Promise<ObjectStore> {
  if (isS3Location(location)) return new S3Store(location, opts);
  return new LocalStore(location);
}
