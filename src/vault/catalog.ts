/**
 * The vault as a catalog of snapshots, for the VS Code side panel and its commands: list every
 * snapshot (the index's, plus archives dropped loose into the vault folder), add a snapshot that
 * a writer produces (export, pack) under the vault lock, and remove one.
 *
 * Adding follows the vault's crash-safety rule (./vault.ts): the archive is written to a temp file
 * and renamed into `snapshots/`, and it becomes a snapshot only when the index that lists it has
 * been written (atomically). Removing drops it from the index first, then deletes the file.
 */
import { fileSha256 } from '../core/hash';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { AgentVaultError, errorMessage } from '../core/errors';
import { ioError } from '../core/fs';
import { TOOL_VERSION } from '../core/version';
import { readManifest, type Manifest, type ManifestAgentCounts } from '../format/archive';
import { isArchivePath } from '../format/validate-any';
import { isFileLocalId } from '../diff/state';
import { ensureVaultDirs, newSnapshotId, readIndex, snapshotPath, SNAPSHOT_EXT, SNAPSHOTS_DIR, withLock, writeIndex, type SnapshotRecord } from './vault';

export interface CatalogAgent {
  id: string;
  name: string | null;
  counts?: ManifestAgentCounts;
}

export interface CatalogSnapshot {
  /** The index id, or the file name of a loose archive. */
  id: string;
  /** Absolute path of the archive. */
  path: string;
  created_at: string;
  bytes: number;
  encrypted: boolean;
  agents: CatalogAgent[];
  collections: string[];
  /** true when the vault index lists it; false for a loose archive in the vault folder. */
  listed: boolean;
  /** Why its manifest could not be read (a loose archive only); the entry is still listed. */
  error?: string;
}

/** One agent's snapshots (newest first), as the Snapshots view and a status report group them. */
export interface CatalogAgentGroup {
  /** the database id, or "name:<name>" for agents with file-local ids (packed .af files) */
  key: string;
  /** the agent id in the snapshots (file-local ids may differ per snapshot: see agentIn) */
  id: string;
  name: string | null;
  snapshots: CatalogSnapshot[];
}

/**
 * The key snapshots group by: the database id; agents packed from .af files have file-local ids
 * (agent-0, agent-1 … in every file), so those group by name.
 */
export function agentGroupKey(a: CatalogAgent): string {
  return isFileLocalId(a.id) ? `name:${a.name ?? a.id}` : a.id;
}

/** Snapshots grouped by agent (agentGroupKey), each group newest first, groups by name. */
export function groupSnapshotsByAgent(snaps: readonly CatalogSnapshot[]): CatalogAgentGroup[] {
  const groups = new Map<string, CatalogAgentGroup>();
  for (const s of snaps) {
    for (const a of s.agents) {
      const key = agentGroupKey(a);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { key, id: a.id, name: a.name, snapshots: [] }));
      if (a.name) g.name = a.name;
      g.snapshots.push(s);
    }
  }
  for (const g of groups.values()) g.snapshots.sort((x, y) => (x.created_at < y.created_at ? 1 : x.created_at > y.created_at ? -1 : 0));
  return [...groups.values()].sort((x, y) => (x.name ?? x.id).localeCompare(y.name ?? y.id));
}

/** The group's agent inside one of its snapshots. */
export function agentIn(s: CatalogSnapshot, g: Pick<CatalogAgentGroup, 'key'>): CatalogAgent {
  return s.agents.find((a) => agentGroupKey(a) === g.key)!;
}

/** Archives in the vault folder itself that the index does not list (copied in by hand). */
const LOOSE_ARCHIVE = /\.(avsnap|zip)$/i;

/** The catalog entry of a snapshot an index lists (a folder vault's, or a bucket's), its archive at `p`. */
export function catalogEntry(s: SnapshotRecord, p: string): CatalogSnapshot {
  return {
    id: s.id,
    path: p,
    created_at: s.created_at,
    bytes: s.bytes,
    encrypted: s.encrypted,
    agents: s.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
    collections: s.collections ?? [],
    listed: true,
  };
}

/** Catalog order: newest first, then by id (descending) for snapshots of the same time. */
export function newestFirst(a: CatalogSnapshot, b: CatalogSnapshot): number {
  return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : a.id < b.id ? 1 : -1;
}

/**
 * Every snapshot of the vault, newest first. A folder without an index is an empty vault; a
 * missing folder too. Reads the index and, for loose archives only, their manifests.
 */
export async function listVaultSnapshots(vaultDir: string): Promise<CatalogSnapshot[]> {
  const out: CatalogSnapshot[] = [];
  const index = await readIndex(vaultDir, { allowMissing: true });
  const listed = new Set<string>();
  for (const s of index.snapshots) {
    const p = path.resolve(snapshotPath(vaultDir, s));
    listed.add(p);
    out.push(catalogEntry(s, p));
  }
  let names: string[] = [];
  try {
    names = await fsp.readdir(vaultDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(e, vaultDir, 'read');
  }
  for (const n of names.sort()) {
    if (!LOOSE_ARCHIVE.test(n)) continue;
    const p = path.resolve(vaultDir, n);
    if (listed.has(p)) continue;
    let st;
    try {
      st = await fsp.stat(p);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    const base: CatalogSnapshot = { id: n, path: p, created_at: st.mtime.toISOString(), bytes: st.size, encrypted: false, agents: [], collections: [], listed: false };
    try {
      if (!(await isArchivePath(p))) throw new AgentVaultError('not-archive', `${p} is not a snapshot archive (no zip signature)`);
      const m = await readManifest(p);
      out.push({ ...base, ...fromManifest(m) });
    } catch (e) {
      out.push({ ...base, error: errorMessage(e) });
    }
  }
  out.sort(newestFirst);
  return out;
}

function fromManifest(m: Manifest): Pick<CatalogSnapshot, 'created_at' | 'encrypted' | 'agents' | 'collections'> {
  const cols = Array.isArray(m.qdrant?.collections) ? m.qdrant!.collections.map((c) => (c as { name?: unknown }).name).filter((x): x is string => typeof x === 'string') : [];
  return {
    created_at: m.created_at,
    encrypted: m.encryption !== undefined && m.encryption !== null,
    agents: m.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
    collections: cols,
  };
}

async function sha256File(file: string): Promise<string> {
  return (await fileSha256(file)).sha256;
}

export interface AddSnapshotOptions {
  /** Recorded in the lock file (who holds the vault), e.g. "vscode export". */
  command: string;
  /** How long to wait for a running backup (default 0: refuse at once with 'locked'). */
  waitMs?: number;
}

/**
 * Adds one snapshot: `write(dest)` must write a complete archive at `dest` (a path inside the
 * vault's snapshots/ folder that does not exist yet) — e.g. exportAgents or packAgentFile, which
 * write to a temp file and rename. The index then lists it. Holds the vault lock throughout; if
 * `write` fails, nothing is listed and a file it left is removed.
 */
export async function addSnapshotToVault(vaultDir: string, write: (dest: string) => Promise<{ manifest: Manifest }>, opts: AddSnapshotOptions): Promise<{ record: SnapshotRecord; path: string }> {
  await ensureVaultDirs(vaultDir);
  return withLock(vaultDir, { command: opts.command, waitMs: opts.waitMs }, async () => {
    const started = Date.now();
    const index = await readIndex(vaultDir, { allowMissing: true });
    const id = newSnapshotId();
    const file = `${SNAPSHOTS_DIR}/${id}${SNAPSHOT_EXT}`;
    const dest = snapshotPath(vaultDir, { file });
    let manifest: Manifest;
    try {
      ({ manifest } = await write(dest));
    } catch (e) {
      await fsp.rm(dest, { force: true }).catch(() => undefined);
      throw e;
    }
    const st = await fsp.stat(dest).catch((e) => {
      throw ioError(e, dest, 'read');
    });
    const record: SnapshotRecord = {
      id,
      file,
      created_at: manifest.created_at,
      bytes: st.size,
      sha256: await sha256File(dest),
      encrypted: manifest.encryption !== undefined && manifest.encryption !== null,
      agents: manifest.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
      collections: fromManifest(manifest).collections,
      probes: 0,
      secrets: manifest.entries.some((e) => e.name.startsWith('secrets/')),
      tool_version: TOOL_VERSION,
      duration_ms: Date.now() - started,
    };
    index.snapshots.push(record);
    await writeIndex(vaultDir, index);
    return { record, path: dest };
  });
}

/**
 * Removes a snapshot: a listed one leaves the index first (under the lock), then its file is
 * deleted; a loose archive (not listed) is just deleted. `snapshot` is the path of the archive.
 */
export async function removeVaultSnapshot(vaultDir: string, snapshot: string, opts: AddSnapshotOptions): Promise<{ removed: string; listed: boolean }> {
  const target = path.resolve(snapshot);
  if (path.relative(path.resolve(vaultDir), target).startsWith('..')) {
    throw new AgentVaultError('usage', `${target} is not inside the vault ${vaultDir}; not deleting it`, { location: { file: target } });
  }
  return withLock(vaultDir, { command: opts.command, waitMs: opts.waitMs }, async () => {
    const index = await readIndex(vaultDir, { allowMissing: true });
    const rec = index.snapshots.find((s) => path.resolve(snapshotPath(vaultDir, s)) === target);
    if (rec) {
      index.snapshots = index.snapshots.filter((s) => s !== rec);
      await writeIndex(vaultDir, index);
    }
    try {
      await fsp.rm(target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !rec) throw ioError(e, target, 'write');
    }
    return { removed: target, listed: !!rec };
  });
}
