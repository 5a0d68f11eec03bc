import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { AgentVaultError } from './errors';

/**
 * Writes a whole file atomically: a temp file in the same folder, fsync, rename. An existing
 * destination is refused unless `overwrite`; the temp file never survives a failure.
 */
export async function writeFileAtomic(dest: string, data: string | Uint8Array, opts: { overwrite?: boolean } = {}): Promise<void> {
  if (!opts.overwrite && (await exists(dest))) {
    throw new AgentVaultError('exists', `${dest} already exists; pass --force to overwrite it`, { exitCode: 2, location: { file: dest } });
  }
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tmp-${randomBytes(6).toString('hex')}`);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(tmp, 'wx');
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.rename(tmp, dest);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw ioError(e, dest, 'write');
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Turns a Node I/O error into an AgentVaultError that names the file and the reason. */
export function ioError(e: unknown, file: string, op: 'read' | 'write' | 'open' | 'create'): AgentVaultError {
  if (e instanceof AgentVaultError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EEXIST: 'already exists',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EISDIR: 'is a folder',
    EROFS: 'read-only file system',
    EFBIG: 'file too large for the file system',
  };
  const why = (code && reasons[code]) || (e as Error)?.message || String(e);
  // a path that does not exist, or is a folder where a file is needed (or the reverse), is the
  // user's to fix (usage, 2); every other failure is an I/O error (74, EX_IOERR): disk full,
  // permission denied, read-only file system… (docs/CLI.md)
  return new AgentVaultError(code === 'ENOSPC' || code === 'EDQUOT' ? 'disk-full' : 'io', `cannot ${op} ${file}: ${why}`, {
    exitCode: code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR' ? 2 : 74,
    location: { file },
    cause: e,
  });
}
