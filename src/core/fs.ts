import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { AgentVaultError } from './errors';

/**
 * The temp file a writer fills before publishing `dest`: `<dest>.tmp-<12 hex>` in the same folder
 * (same file system, so the final rename is atomic; docs/FORMAT.md "Writers").
 */
export function tempPathFor(dest: string): string {
  return `${dest}.tmp-${randomBytes(6).toString('hex')}`;
}

/** Whether `name` (a bare file name) is a temp file of tempPathFor for a file named `base`. */
export function isTempNameOf(name: string, base: string): boolean {
  return name.startsWith(`${base}.tmp-`) && /^[0-9a-f]{12}$/.test(name.slice(base.length + 5));
}

/** Refusal to replace an existing output (usage: the user names another file or allows overwriting). */
export function existsError(dest: string): AgentVaultError {
  return new AgentVaultError('exists', `${dest} already exists`, { kind: 'usage', remedy: 'overwrite', location: { file: dest } });
}

/**
 * Moves a finished (fsynced) temp file into place. Never over an existing file unless `overwrite`:
 * link() fails atomically when `dest` exists, so no concurrent file is clobbered (on file systems
 * without hard links: check, then rename). The temp file is gone afterwards unless this throws
 * (the caller removes it).
 */
export async function publishFile(tmp: string, dest: string, opts: { overwrite?: boolean } = {}): Promise<void> {
  if (opts.overwrite) {
    try {
      await fs.rename(tmp, dest);
    } catch (e) {
      throw ioError(e, dest, 'write');
    }
    return;
  }
  try {
    await fs.link(tmp, dest);
    await fs.rm(tmp, { force: true });
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw existsError(dest);
  }
  if (await exists(dest)) throw existsError(dest);
  try {
    await fs.rename(tmp, dest);
  } catch (e) {
    throw ioError(e, dest, 'write');
  }
}

/** fsyncs a closed file (through a new descriptor) and returns its size. */
export async function fsyncFile(file: string): Promise<number> {
  const fh = await fs.open(file, 'r+');
  try {
    await fh.sync();
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

/** fsyncs a folder after a rename into it, where the platform allows it (not on Windows). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch {
    // not supported on every platform; the rename itself is what matters
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * Writes a whole file atomically: a temp file in the same folder, fsync, publish. An existing
 * destination is refused unless `overwrite`; the temp file never survives a failure.
 */
export async function writeFileAtomic(dest: string, data: string | Uint8Array, opts: { overwrite?: boolean } = {}): Promise<void> {
  if (!opts.overwrite && (await exists(dest))) throw existsError(dest);
  const tmp = tempPathFor(dest);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(tmp, 'wx');
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await publishFile(tmp, dest, opts);
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
  // user's to fix (usage); every other failure is an I/O error: disk full, permission denied,
  // read-only file system… (docs/CLI.md)
  return new AgentVaultError(code === 'ENOSPC' || code === 'EDQUOT' ? 'disk-full' : 'io', `cannot ${op} ${file}: ${why}`, {
    kind: code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR' ? 'usage' : 'io',
    location: { file },
    cause: e,
  });
}
