/**
 * Vault locations in object storage: `s3://<bucket>[/<prefix>][?endpoint=<url>&region=<r>&path-style=true]`.
 * No SDK here: the configuration and the extension can tell a remote vault from a folder without
 * loading the AWS SDK (./s3.ts opens it).
 */
import { AgentVaultError } from '../../core/errors';

export interface S3Location {
  bucket: string;
  /** '' or ends with '/' */
  prefix: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  /** The location as written, without query secrets (there are none to hide: credentials never go here). */
  display: string;
}

export function isS3Location(loc: string): boolean {
  return /^s3:\/\//i.test(loc);
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Location(loc: string): S3Location {
  // URL parsing folds "a/../b" into "b": check the segments as written
  const rawPath = /^s3:\/\/[^/?#]*([^?#]*)/i.exec(loc)?.[1] ?? '';
  if (rawPath.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new AgentVaultError('usage', `the prefix of ${loc} has a "." or ".." segment`, { kind: 'usage' });
  }
  let u: URL;
  try {
    u = new URL(loc);
  } catch {
    throw new AgentVaultError('usage', `${loc} is not a valid s3:// location (expected s3://<bucket>/<prefix>)`, { kind: 'usage' });
  }
  if (u.protocol !== 's3:') throw new AgentVaultError('usage', `${loc} is not an s3:// location`, { kind: 'usage' });
  if (u.username || u.password) {
    throw new AgentVaultError('usage', `an s3:// location must not hold credentials; use the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or an AWS profile`, { kind: 'usage' });
  }
  const bucket = u.hostname;
  if (!BUCKET_RE.test(bucket))
    throw new AgentVaultError('usage', `"${bucket}" in ${u.protocol}//${bucket}${u.pathname} is not a valid bucket name (3-63 lower-case letters, digits, dots and hyphens)`, { kind: 'usage' });
  let prefix = decodeURIComponent(u.pathname).replace(/^\/+/, '');
  if (prefix && !prefix.endsWith('/')) prefix += '/';
  if (
    prefix
      .split('/')
      .slice(0, -1)
      .some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new AgentVaultError('usage', `the prefix of ${loc} has an empty, "." or ".." segment`, { kind: 'usage' });
  }
  const known = new Set(['endpoint', 'region', 'path-style']);
  for (const k of u.searchParams.keys()) if (!known.has(k)) throw new AgentVaultError('usage', `unknown option "${k}" in ${loc} (known: endpoint, region, path-style)`, { kind: 'usage' });
  const endpoint = u.searchParams.get('endpoint') ?? undefined;
  if (endpoint && !/^https?:\/\//.test(endpoint)) throw new AgentVaultError('usage', `endpoint ${endpoint} in ${loc} must start with http:// or https://`, { kind: 'usage' });
  const ps = u.searchParams.get('path-style');
  return {
    bucket,
    prefix,
    endpoint,
    region: u.searchParams.get('region') ?? undefined,
    pathStyle: ps === null ? undefined : ps === '' || ps === 'true' || ps === '1',
    display: `s3://${bucket}/${prefix}`,
  };
}

/**
 * Commands that write a vault folder in place (import into it, delete from it, drill reports
 * into it…) refuse an s3:// location with what to run instead; the location otherwise.
 */
export function requireLocalVault(location: string, what: string): string {
  if (!isS3Location(location)) return location;
  throw new AgentVaultError('usage', `${what} works on a vault folder; ${location} is a vault in object storage`, {
    kind: 'usage',
    hint: 'run it with the agent-vault CLI (backup, prune, verify, drill and rebuild-index take s3:// vaults), or copy the snapshots to a folder with "agent-vault vault copy"',
  });
}
