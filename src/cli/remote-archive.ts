/**
 * `s3://bucket/prefix#<snapshot>` where a command takes an archive: the snapshot (id, unique id
 * prefix or "latest") of the (archive, not store) vault at that location is downloaded into a temp folder, checked
 * against the SHA-256 its index records, and the command reads the local copy, which is removed
 * when the process ends. Any other argument is returned as it is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentVaultError } from '../core/errors';
import { isS3Location } from '../vault/remote/location';
import { fetchSnapshot } from '../vault/remote/remote-vault';
import { S3Store } from '../vault/remote/s3';

const temps: string[] = [];
let hooked = false;

export function isRemoteArchiveRef(arg: string): boolean {
  return isS3Location(arg) && arg.includes('#');
}

export async function resolveArchiveArg(arg: string): Promise<string> {
  // (a store vault's snapshot, folder or s3://…, is read in place: ./store.ts storeArchiveArg)
  if (!isRemoteArchiveRef(arg)) return arg;
  const at = arg.lastIndexOf('#');
  const location = arg.slice(0, at);
  const ref = decodeURIComponent(arg.slice(at + 1));
  if (!ref) throw new AgentVaultError('usage', `${arg}: name the snapshot after "#" (an id, a unique id prefix, or "latest")`, { kind: 'usage' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-vault-fetch-'));
  temps.push(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const d of temps) rmSync(d, { recursive: true, force: true });
    });
  }
  const store = new S3Store(location);
  try {
    return (await fetchSnapshot(store, ref, dir)).path;
  } finally {
    await store.close();
  }
}
