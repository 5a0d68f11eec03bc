/**
 * A store vault (`agent-vault vault init --store`, a folder or `s3://…`) as a catalog of snapshots,
 * for the VS Code side panel and its commands, and the reads the side panel does on one of its
 * snapshots: describe, open as a diff side, restore, read the manifest.
 *
 * A store snapshot is named `<vault>#<vault id>` (as the CLI's `restore`, `diff` and `inspect`
 * take it): that reference is the catalog entry's `path`. Every read opens the snapshot in place
 * (src/vault/store/reader.ts, streamed out of the store's packs; no temporary archive), in a
 * folder under the vault's shared lock until the reader is closed. In object storage readers take
 * no lock (docs/VAULT.md): a prune running meanwhile can make a read fail with a missing chunk,
 * never return wrong data.
 *
 * The `…Any` helpers take either kind of reference (an archive path or a store reference), so a
 * caller needs no branch of its own.
 */
import * as path from 'node:path';
import { AgentVaultError } from '../core/errors';
import { openSource, openReaderSource, type AgentStateSource } from '../diff/sources';
import { diffPaths, type DiffReport } from '../diff/index';
import { readManifest, type ArchiveReader, type Manifest } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { describeArchive, describeFile, type FileDescription } from '../format/inspect';
import type { RestoreSource } from '../letta/restore';
import { listVaultSnapshots, newestFirst, type CatalogSnapshot } from './catalog';
import type { StatusPolicy } from './config';
import { isS3Location } from './remote/location';
import type { VaultStatus } from './status';
import { openStoreVaultSnapshot } from './store-read';
import { isStoreLocation, isStoreVault, listStoreVault, storeVaultStatus } from './store-vault';

/** The reference of a store snapshot: `<vault>#<vault id>` (the id URI-encoded when it needs it). */
export function storeSnapshotRef(vault: string, vaultId: string): string {
  return `${vault}#${encodeURIComponent(vaultId)}`;
}

/**
 * The vault and snapshot of a store snapshot reference, or null when `ref` is not one (an archive
 * path): a `#` after a folder that is a store vault, or after an `s3://` location.
 */
export function parseStoreSnapshotRef(ref: string): { vault: string; snapshot: string } | null {
  const at = ref.lastIndexOf('#');
  if (at <= 0 || at === ref.length - 1) return null;
  const vault = ref.slice(0, at);
  if (!isS3Location(vault) && !isStoreVault(vault)) return null;
  return { vault: isS3Location(vault) ? vault : path.resolve(vault), snapshot: decodeURIComponent(ref.slice(at + 1)) };
}

export const isStoreSnapshotRef = (ref: string): boolean => parseStoreSnapshotRef(ref) !== null;

/**
 * Every snapshot of a store vault (a folder or s3://…), newest first, as catalog entries whose
 * `path` is the snapshot's reference. Reads the store's snapshot files only (no pack). An
 * encrypted store needs its key. A snapshot file that cannot be read is listed with `error`.
 */
export async function listStoreVaultSnapshots(vault: string, decrypt?: DecryptOptions): Promise<CatalogSnapshot[]> {
  const where = isS3Location(vault) ? vault : path.resolve(vault);
  const out: CatalogSnapshot[] = [];
  for (const s of await listStoreVault(where, decrypt)) {
    out.push({
      id: s.vault_id,
      path: storeSnapshotRef(where, s.vault_id),
      created_at: s.created_at ?? s.time,
      bytes: s.size,
      encrypted: !!s.source?.encrypted,
      agents: s.agents.map((a) => ({ id: a.id, name: a.name, counts: a.counts })),
      collections: s.collections ?? [],
      listed: true,
      ...(s.error ? { error: s.error } : {}),
    });
  }
  out.sort(newestFirst);
  return out;
}

export interface OpenStoreRefOptions {
  decrypt?: DecryptOptions;
  /** the command the shared lock of a folder names (default `read <ref>`) */
  command?: string;
}

/**
 * Opens a store snapshot reference for reading in place (a folder or s3://…): the vault's shared
 * (reader) lock is held until the reader is closed.
 */
export async function openStoreSnapshotRef(ref: string, opts: OpenStoreRefOptions = {}): Promise<ArchiveReader> {
  const r = parseStoreSnapshotRef(ref);
  if (!r) throw new AgentVaultError('usage', `${ref} is not a store snapshot (<store vault>#<snapshot>)`, { kind: 'usage' });
  const decrypt = opts.decrypt && (opts.decrypt.passphrase !== undefined || opts.decrypt.key !== undefined) ? opts.decrypt : undefined;
  return (await openStoreVaultSnapshot(r.vault, r.snapshot, { decrypt, command: opts.command ?? `read ${r.snapshot}` })).reader;
}

/** A diff side (AgentStateSource) for an archive, an agent file or a store snapshot reference. */
export async function openSnapshotSourceAny(src: string, opts: { decrypt?: DecryptOptions } = {}): Promise<AgentStateSource> {
  if (isStoreSnapshotRef(src)) return openReaderSource(await openStoreSnapshotRef(src, { decrypt: opts.decrypt }));
  return openSource(src, opts);
}

/** The semantic diff of two sides, each an archive, an agent file or a store snapshot reference. */
export async function diffSnapshotsAny(a: string, b: string, opts: { agent?: string; decrypt?: DecryptOptions } = {}): Promise<DiffReport> {
  return diffPaths(a, b, { ...opts, open: openSnapshotSourceAny });
}

/** What `inspect` says about an archive, an agent file or a store snapshot reference. */
export async function describeSnapshotAny(src: string, opts: { decrypt?: DecryptOptions } = {}): Promise<FileDescription> {
  if (!isStoreSnapshotRef(src)) return describeFile(src, opts);
  const reader = await openStoreSnapshotRef(src, { decrypt: opts.decrypt });
  await reader.close();
  return describeArchive(reader, { container: 'Agent Vault snapshot in a store vault' });
}

/** The manifest of an archive or of a store snapshot reference. */
export async function readSnapshotManifestAny(src: string, opts: { decrypt?: DecryptOptions } = {}): Promise<Manifest> {
  if (!isStoreSnapshotRef(src)) return readManifest(src);
  const reader = await openStoreSnapshotRef(src, { decrypt: opts.decrypt });
  await reader.close();
  return reader.manifest;
}

/** What planRestore/restoreAgents read: the path as it is, or a store snapshot opened in place (each time it is read). */
export function restoreSourceAny(src: string, decrypt?: DecryptOptions): RestoreSource {
  return isStoreSnapshotRef(src) ? { open: () => openStoreSnapshotRef(src, { decrypt, command: 'restore' }) } : src;
}

/** The snapshots of a vault of either kind: a store vault's (folder or s3://) as references, else a folder's (./catalog.ts). */
export async function listVaultSnapshotsAny(vault: string, decrypt?: () => Promise<DecryptOptions | undefined>): Promise<CatalogSnapshot[]> {
  if (await isStoreLocation(vault)) return listStoreVaultSnapshots(vault, await decrypt?.());
  return listVaultSnapshots(vault);
}

/** `agent-vault status` of a store vault (folder or s3://), or null when `vault` is not one. */
export async function storeStatusOrNull(vault: string, policy: StatusPolicy, decrypt: () => Promise<DecryptOptions | undefined>): Promise<VaultStatus | null> {
  if (!(await isStoreLocation(vault))) return null;
  return (await storeVaultStatus(vault, policy, await decrypt())).status;
}
