/**
 * The archives are the truth; the index (`vault.json`) is a cache of what they say.
 *
 * - `quickVerify`: is a listed snapshot what the index says (file present, size and whole-file
 *   sha256 as recorded, manifest readable and naming the same agents)? Prune counts only these.
 * - `adoptUnlisted`: an archive in `snapshots/` that the index does not list (the index was
 *   deleted, an older copy was put back, a backup was killed between its rename and the index
 *   write) is verified — manifest and every entry's stored checksums — and listed again; one that
 *   fails is reported and left where it is. Nothing is ever deleted here.
 * - `rebuildIndex` (`agent-vault rebuild-index`): the index rebuilt from the archives, keeping
 *   what the old index knew (probe counts, durations) for archives that are still there.
 */
import { fileSha256 as coreFileSha256 } from '../core/hash';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError } from '../core/fs';
import { openArchive, type Manifest } from '../format/archive';
import type { KdfDescription } from '../format/crypto';
import { verifyArchive } from './verify';
import {
  emptyIndex,
  ensureVaultDirs,
  indexPath,
  readIndex,
  snapshotPath,
  SNAPSHOT_EXT,
  SNAPSHOT_NAME,
  SNAPSHOTS_DIR,
  sweepTempFiles,
  unlistedFiles,
  withLock,
  writeIndex,
  type SnapshotRecord,
  type VaultIndex,
} from './vault';

/** SHA-256 (hex) of a file (src/core/hash.ts). */
export async function fileSha256(file: string): Promise<string> {
  return (await coreFileSha256(file)).sha256;
}

/**
 * Quick verification of a listed snapshot: the file exists with the recorded size and sha256, and
 * its manifest reads and names the recorded agents. Returns null when good, else why not.
 */
export async function quickVerify(vaultDir: string, rec: SnapshotRecord): Promise<string | null> {
  const file = snapshotPath(vaultDir, rec);
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${rec.file} is missing` : `${rec.file}: ${errorMessage(e)}`;
  }
  if (typeof rec.bytes === 'number' && st.size !== rec.bytes) return `${rec.file} is ${st.size} bytes, the index records ${rec.bytes}`;
  if (rec.sha256) {
    const sha = await fileSha256(file).catch((e) => `error: ${errorMessage(e)}`);
    if (sha !== rec.sha256) return `${rec.file}: its sha256 differs from the one recorded when it was written (the file was changed or damaged)`;
  }
  try {
    const reader = await openArchive(file, { verifyManifestOnly: true });
    const got = reader.manifest.agents
      .map((a) => a.id)
      .sort()
      .join(',');
    await reader.close();
    const want = rec.agents
      .map((a) => a.id)
      .sort()
      .join(',');
    if (got !== want) return `${rec.file}: its manifest names other agents than the index`;
  } catch (e) {
    return `${rec.file}: ${errorMessage(e)}`;
  }
  return null;
}

function collectionsOf(m: Manifest): string[] {
  return Array.isArray(m.qdrant?.collections) ? m.qdrant!.collections.map((c) => (c as { name?: unknown }).name).filter((x): x is string => typeof x === 'string') : [];
}

/** The index record of an archive, from its manifest (what backup would have recorded). Also used for archives in object storage (downloaded into a scratch folder). */
export async function recordFromArchive(vaultDir: string, rel: string, prev?: SnapshotRecord): Promise<SnapshotRecord> {
  const file = path.join(vaultDir, ...rel.split('/'));
  const reader = await openArchive(file, { verifyManifestOnly: true });
  const m = reader.manifest;
  await reader.close();
  const st = await fsp.stat(file);
  const base = path.basename(rel, SNAPSHOT_EXT);
  const probes = m.probes as { count?: unknown } | undefined;
  return {
    id: base,
    file: rel,
    created_at: m.created_at,
    bytes: st.size,
    sha256: await fileSha256(file),
    encrypted: m.encryption !== undefined && m.encryption !== null,
    agents: m.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
    collections: collectionsOf(m),
    probes: typeof probes?.count === 'number' ? probes.count : (prev?.probes ?? 0),
    secrets: m.entries.some((e) => e.name.startsWith('secrets/')),
    tool_version: m.tool?.version ?? 'unknown',
    ...(prev?.duration_ms !== undefined ? { duration_ms: prev.duration_ms } : {}),
  };
}

export interface AdoptResult {
  /** Archives verified and listed again. */
  adopted: SnapshotRecord[];
  /** Archives that failed verification (kept where they are, not listed). */
  rejected: Array<{ file: string; reason: string }>;
}

/**
 * Lists again every archive in snapshots/ that the index does not list and whose manifest and
 * entry checksums verify (adds them to `index`, does not write it). Archives that fail are
 * reported, never removed. Call while holding the exclusive lock.
 */
export async function adoptUnlisted(vaultDir: string, index: VaultIndex): Promise<AdoptResult> {
  const res: AdoptResult = { adopted: [], rejected: [] };
  const { archives } = await unlistedFiles(vaultDir, index);
  const ids = new Set(index.snapshots.map((s) => s.id));
  for (const rel of archives) {
    const file = path.join(vaultDir, ...rel.split('/'));
    try {
      const checks = await verifyArchive(file, {});
      const bad = checks.filter((c) => !c.ok && c.name !== 'decrypt');
      if (bad.length) {
        res.rejected.push({ file: rel, reason: bad.map((c) => `[${c.name}] ${c.message ?? 'failed'}`).join('; ') });
        continue;
      }
      const rec = await recordFromArchive(vaultDir, rel);
      if (ids.has(rec.id)) {
        res.rejected.push({ file: rel, reason: `the index already lists another file as snapshot ${rec.id}` });
        continue;
      }
      ids.add(rec.id);
      index.snapshots.push(rec);
      res.adopted.push(rec);
    } catch (e) {
      res.rejected.push({ file: rel, reason: errorMessage(e) });
    }
  }
  return res;
}

/** The vault's shared scrypt salt, recovered from the newest passphrase-encrypted snapshot. */
async function recoverKdf(vaultDir: string, index: VaultIndex): Promise<KdfDescription | null> {
  const enc = [...index.snapshots].filter((s) => s.encrypted).sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  for (const s of enc) {
    try {
      const r = await openArchive(snapshotPath(vaultDir, s), { verifyManifestOnly: true });
      const kdf = (r.manifest.encryption as { kdf?: KdfDescription } | undefined)?.kdf;
      await r.close();
      if (kdf && kdf.name === 'scrypt') return kdf;
    } catch {
      /* next */
    }
  }
  return null;
}

export interface RebuildIndexOptions {
  /** Only report what would change. */
  dryRun?: boolean;
  /** Wait this long for a running backup/prune/drill (default 0: refuse). */
  waitMs?: number;
}

export interface RebuildIndexReport {
  vault: string;
  dryRun: boolean;
  /** What the old index was: 'ok', 'missing' or 'damaged' (the damaged file is kept as `backup`). */
  previous: 'ok' | 'missing' | 'damaged';
  /** Copy of a damaged index, kept next to it. */
  backup: string | null;
  /** Listed snapshots whose archive is present (kept, as recorded). */
  kept: string[];
  /** Listed snapshots whose archive is present but differs from the record (kept, reported). */
  damaged: Array<{ id: string; reason: string }>;
  /** Listed snapshots whose archive is gone (no longer listed). */
  missing: Array<{ id: string; file: string }>;
  /** Archives listed again. */
  adopted: SnapshotRecord[];
  /** Archives that failed verification (left where they are, not listed). */
  rejected: Array<{ file: string; reason: string }>;
  /** Temp files of interrupted runs that were removed. */
  swept: string[];
  /** Files in snapshots/ that are neither archives nor temp files of this project (left alone). */
  foreign: string[];
}

/**
 * Rebuilds `vault.json` from the archives in `snapshots/` (like restic's rebuild-index): holding
 * the exclusive lock, every listed snapshot whose archive is gone is dropped from the index, every
 * unlisted archive that verifies is listed, every one that does not is reported, and the index is
 * written atomically. A damaged index is copied to `vault.json.damaged-<time>` first. Exported for
 * the VS Code extension.
 */
export async function rebuildIndex(vaultDir: string, opts: RebuildIndexOptions = {}): Promise<RebuildIndexReport> {
  const snapDir = path.join(vaultDir, SNAPSHOTS_DIR);
  const isDir = await fsp.stat(snapDir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) {
    throw new AgentVaultError('no-vault', `${vaultDir} is not a vault (it has no ${SNAPSHOTS_DIR}/ folder)`, { location: { file: vaultDir }, kind: 'usage', remedy: 'vault' });
  }
  await ensureVaultDirs(vaultDir);
  return withLock(vaultDir, { command: opts.dryRun ? 'rebuild-index --dry-run' : 'rebuild-index', waitMs: opts.waitMs }, async () => {
    const report: RebuildIndexReport = { vault: vaultDir, dryRun: !!opts.dryRun, previous: 'ok', backup: null, kept: [], damaged: [], missing: [], adopted: [], rejected: [], swept: [], foreign: [] };
    let index: VaultIndex;
    try {
      index = await readIndex(vaultDir);
    } catch (e) {
      if (!(e instanceof AgentVaultError)) throw e;
      if (e.code === 'no-vault') {
        report.previous = 'missing';
        index = emptyIndex();
      } else if (e.code === 'vault-index') {
        report.previous = 'damaged';
        index = emptyIndex();
        const backup = `${indexPath(vaultDir)}.damaged-${new Date().toISOString().replace(/[:.]/g, '')}`;
        if (!opts.dryRun) {
          try {
            await fsp.copyFile(indexPath(vaultDir), backup);
          } catch (ce) {
            throw ioError(ce, backup, 'write');
          }
        }
        report.backup = backup;
      } else throw e;
    }
    const still: SnapshotRecord[] = [];
    for (const rec of index.snapshots) {
      const present = await fsp.stat(snapshotPath(vaultDir, rec)).then(
        (s) => s.isFile(),
        () => false,
      );
      if (!present) {
        report.missing.push({ id: rec.id, file: rec.file });
        continue;
      }
      still.push(rec);
      const why = await quickVerify(vaultDir, rec);
      if (why) report.damaged.push({ id: rec.id, reason: why });
      else report.kept.push(rec.id);
    }
    index.snapshots = still;
    if (!opts.dryRun) report.swept = await sweepTempFiles(vaultDir);
    const adopt = await adoptUnlisted(vaultDir, index);
    report.adopted = adopt.adopted;
    report.rejected = adopt.rejected;
    report.foreign = (await unlistedFiles(vaultDir, index)).other;
    if (!index.kdf || index.kdf.name !== 'scrypt') index.kdf = (await recoverKdf(vaultDir, index)) ?? index.kdf ?? null;
    if (!opts.dryRun) await writeIndex(vaultDir, index);
    return report;
  });
}

/** The snapshot-name pattern check, for messages. */
export function isProjectSnapshotName(name: string): boolean {
  return SNAPSHOT_NAME.test(name);
}
