/**
 * Validate a path that may be an agent file or a snapshot archive (detected by content, not name).
 * An archive is valid when its manifest passes the schema, every entry matches its checksum, and
 * every agent entry is a valid .af v2.
 */
import { promises as fs } from 'node:fs';
import { AgentVaultError } from '../core/errors';
import { ioError } from '../core/fs';
import { parseAgentFileBytes } from './af';
import { openArchive } from './archive';
import { noKeyError, type DecryptOptions } from './crypto';
import { validateAgentFilePath, validateParsed, type Finding, type ValidationReport } from './validate';

export type { Finding, ValidationReport };

const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04]);

export async function isArchivePath(p: string): Promise<boolean> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(p, 'r');
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && buf.equals(ZIP_MAGIC);
  } catch (e) {
    throw ioError(e, p, 'open');
  } finally {
    await fh?.close();
  }
}

export interface ValidateOptions {
  /** Passphrase or key of an encrypted archive (without it, an encrypted archive is error 'no-key', kind 'usage'). */
  decrypt?: DecryptOptions;
}

export async function validateAnyPath(p: string, opts: ValidateOptions = {}): Promise<ValidationReport> {
  return (await isArchivePath(p)) ? validateArchivePath(p, opts) : validateAgentFilePath(p);
}

export async function validateArchivePath(p: string, opts: ValidateOptions = {}): Promise<ValidationReport> {
  const errors: Finding[] = [];
  const warnings: Finding[] = [];
  let reader;
  const hasKey = !!opts.decrypt && (opts.decrypt.passphrase !== undefined || opts.decrypt.key !== undefined);
  try {
    reader = await openArchive(p, { decrypt: hasKey ? opts.decrypt : undefined });
  } catch (e) {
    if (!(e instanceof AgentVaultError) || e.code === 'io') throw e;
    return { file: p, valid: false, errors: [{ severity: 'error', code: e.code, message: e.message, pointer: e.location?.pointer ?? '' }], warnings };
  }
  if (reader.encrypted && !reader.decryptable) {
    await reader.close();
    throw noKeyError(p, 'its entries cannot be validated');
  }
  try {
    const bad = new Set<string>();
    for (const r of await reader.verifyAll()) {
      if (!r.ok) bad.add(r.entry);
      if (!r.ok) errors.push({ severity: 'error', code: 'checksum', message: r.error ?? `entry ${r.entry} does not match its checksum`, pointer: '' });
    }
    for (const agent of reader.manifest.agents) {
      if (bad.has(agent.entry)) continue;
      const parsed = parseAgentFileBytes(await reader.readEntry(agent.entry), `${p}!${agent.entry}`);
      const rep = validateParsed(parsed);
      if (parsed.format !== 'v2') {
        errors.push({ severity: 'error', code: 'archive-entry-format', message: `${agent.entry} is ${parsed.format}; archive entries must be plain .af v2`, pointer: '' });
      }
      for (const f of rep.errors) errors.push({ ...f, message: `${agent.entry}: ${f.message}` });
      for (const f of rep.warnings) warnings.push({ ...f, message: `${agent.entry}: ${f.message}` });
    }
  } finally {
    await reader.close();
  }
  return { file: p, format: undefined, valid: errors.length === 0, errors, warnings };
}
