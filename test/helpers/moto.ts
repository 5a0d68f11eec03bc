/**
 * A real S3-compatible server for the object-storage tests: moto's standalone server (PyPI
 * `moto[server]`, pinned and installed by scripts/provision-moto.sh into .tools/moto/), started
 * on 127.0.0.1 at a free port and stopped with its process group.
 *
 *   const s3 = await startMoto();               // s3.endpoint = http://127.0.0.1:<port>
 *   const s3auth = await startMoto({ auth: true }); // IAM auth on: unknown keys get 403
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { REPO_ROOT } from './paths';
import { freePort } from './pgcluster';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const TOOLS = process.env.AGENT_VAULT_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools');
export const MOTO_SERVER = path.join(TOOLS, 'moto', 'bin', 'moto_server');

export interface MotoServer {
  endpoint: string;
  port: number;
  /** s3://<bucket>/<prefix>?endpoint=…&path-style=true */
  location(bucket: string, prefix?: string): string;
  client(creds?: { accessKeyId: string; secretAccessKey: string }): S3Client;
  createBucket(name: string): Promise<void>;
  log(): string;
  stop(): Promise<void>;
}

/** Credentials the tests use (moto without auth accepts any). */
export const TEST_CREDS = { accessKeyId: 'agent-vault-test', secretAccessKey: 'agent-vault-test-secret' };

function ensureProvisioned(): void {
  if (existsSync(MOTO_SERVER)) return;
  const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'provision-moto.sh')], { encoding: 'utf8', stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(MOTO_SERVER)) throw new Error(`moto is not installed and scripts/provision-moto.sh failed (exit ${r.status})`);
}

export async function startMoto(opts: { auth?: boolean } = {}): Promise<MotoServer> {
  ensureProvisioned();
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' };
  // IAM auth: after this many unauthenticated actions (none) every request needs a key that
  // exists in moto's IAM, so any other key is refused like real S3 does (403 InvalidAccessKeyId)
  if (opts.auth) env.INITIAL_NO_AUTH_ACTION_COUNT = '0';
  else delete env.INITIAL_NO_AUTH_ACTION_COUNT;
  let out = '';
  const child: ChildProcess = spawn(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited (${child.exitCode}): ${out}`);
    const ok = await fetch(`${endpoint}/moto-api/`)
      .then((r) => r.status < 500)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) {
      process.kill(-child.pid!, 'SIGKILL');
      throw new Error(`moto_server did not answer on ${endpoint} within 30 s: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    await gone;
    clearTimeout(t);
  };
  process.once('exit', () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  const client = (creds = TEST_CREDS): S3Client => new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: creds });
  return {
    endpoint,
    port,
    location: (bucket, prefix = '') => `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(endpoint)}&path-style=true`,
    client,
    async createBucket(name) {
      const c = client();
      try {
        await c.send(new CreateBucketCommand({ Bucket: name }));
      } finally {
        c.destroy();
      }
    },
    log: () => out,
    stop,
  };
}

/** Keys and sizes of every object under a prefix of a bucket (what a vault costs there). */
export async function listBucket(client: S3Client, bucket: string, prefix: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) out.set(o.Key!, o.Size!);
    token = r.NextContinuationToken;
  } while (token);
  return out;
}
