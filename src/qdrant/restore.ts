/**
 * Restore of Qdrant collections from an archive, all-or-nothing:
 *
 * 1. plan: read and check the manifest's `qdrant` section; for each target that exists, compare
 *    its fingerprint with the archive's and refuse a mismatch naming the settings; refuse to
 *    overwrite an existing collection without `overwrite`;
 * 2. verify: extract each snapshot to a temporary file and check its SHA-256 against the manifest
 *    before anything is uploaded (unless `skipChecksumVerify`);
 * 3. apply: absent target → upload the snapshot into the missing name, so Qdrant builds the
 *    collection (config and payload indexes) from the snapshot itself (recover.rs creates a missing
 *    collection from the snapshot's config; an existing one would keep its own config); existing
 *    target → take a server-side safety snapshot (and download it) first, then upload; aliases the
 *    archive records are created pointing at the target; every uploaded file is deleted from the
 *    server afterwards (Qdrant keeps uploads in the collection's snapshot folder);
 * 4. check: fingerprint and exact point count of every restored collection;
 * 5. on any failure: when an upload's outcome is unknown (timeout, broken connection), poll the
 *    collection and shard state until the server has finished (bounded by the upload timeout);
 *    delete uploaded files, delete the collections this restore created and recover pre-existing
 *    ones from their safety snapshots, put aliases back, then check they are back to their previous
 *    fingerprint and count.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AgentVaultError, errorMessage } from '../core/errors';
import type { QdrantConnection } from './connection';
import { changeAliases, clusterInfo, ensureSingleNodeForRestore, listAliases } from './cluster';
import { ensureFreeSpace, estimateCollectionBytes } from './diskspace';
import { isNetworkError, isTimeoutError, qdrantCallError, usageError, verificationError } from './errors';
import { checkManifestFingerprint, createCollectionBody, diffFingerprints, fingerprintFromInfo, formatDifferences, paramsNotCreatedPatch, payloadIndexRequests } from './fingerprint';
import { countPoints, importPoints } from './points';
import { createServerSnapshot, deleteServerSnapshot, deleteUploadedSnapshot, downloadSnapshot, listServerSnapshots, uploadNameFor, uploadSnapshot } from './snapshots';
import { POINTS_FORMAT, type CollectionFingerprint, type Schemas, type QdrantCollectionManifest, type QdrantManifestSection, type StatfsFn } from './types';

/** What the restore needs from an opened archive (src/format/archive.ts's reader fits). */
export interface ArchiveSource {
  manifest: { qdrant?: unknown };
  has(name: string): boolean;
  openStream(name: string): Promise<NodeJS.ReadableStream | Readable> | NodeJS.ReadableStream | Readable;
}

export interface QdrantRestoreOptions {
  /** Collections (archive names) to restore; all in the archive when absent or empty. */
  collections?: string[];
  /** Restore the (single) selected collection under this name instead, e.g. a staging name. */
  targetName?: string;
  /** Allow replacing existing collections whose fingerprint matches (CLI `--force`). */
  overwrite?: boolean;
  /** Plan and verify checksums only; change nothing on the server. */
  dryRun?: boolean;
  /** Skip our SHA-256 check of the extracted snapshot against the manifest (and the server-side checksum). */
  skipChecksumVerify?: boolean;
  /** Restore from the portable points export (`--points` backups) instead of the snapshot. */
  fromPoints?: boolean;
  /** Parent directory for temporary files (default: the OS temp directory). */
  workDir?: string;
  statfs?: StatfsFn;
  /** Archive path, for messages. */
  archiveLabel?: string;
  /**
   * After an upload whose outcome is unknown (timeout, broken connection), the longest time to poll
   * the collection and shard state for the server's outcome before rolling back (default: the
   * connection's upload timeout, at least its per-request timeout).
   */
  recoveryWaitMs?: number;
  /** Interval of that polling (default 1 s). */
  pollIntervalMs?: number;
  /** @deprecated Former fixed wait before rollback; now only the polling interval when `pollIntervalMs` is not given. */
  settleMs?: number;
}

export const DEFAULT_POLL_INTERVAL_MS = 1_000;

export interface RestorePlanItem {
  source: string;
  target: string;
  exists: boolean;
  method: 'snapshot' | 'points';
  points_count: number;
}

export interface QdrantRestoreResult {
  dryRun: boolean;
  serverVersion: string;
  items: RestorePlanItem[];
  /** Checksums verified before upload (false when skipped). */
  checksumsVerified: boolean;
}

interface PlannedItem extends RestorePlanItem {
  manifest: QdrantCollectionManifest;
  serverFingerprint?: CollectionFingerprint;
  file?: string;
  /** Points upserted by a points restore. */
  imported?: number;
  /** Position in the plan (used in temporary file names). */
  seq: number;
}

type JournalEntry =
  | { kind: 'created'; target: string }
  | {
      kind: 'existing';
      target: string;
      safetyFile: string;
      safetySha256: string;
      before: { fingerprint: CollectionFingerprint; points_count: number; aliases: string[] };
    }
  /** An alias this restore created (`previous` undefined) or re-pointed away from `previous`. */
  | { kind: 'alias'; target: string; alias: string; previous?: string };

/** A file uploaded into a collection's snapshot folder (Qdrant keeps it until deleted). */
interface UploadRecord {
  collection: string;
  name: string;
  deleted: boolean;
}

/** Everything the apply phase tracks for cleanup and rollback. */
interface ApplyState {
  journal: JournalEntry[];
  safetySnapshots: { collection: string; name: string }[];
  uploads: UploadRecord[];
  /** Alias name → collection it points at now (kept current while applying). */
  aliases: Map<string, string>;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Reads and checks the manifest's `qdrant` section (untrusted input). */
export function readQdrantSection(manifest: { qdrant?: unknown }, label = 'archive'): QdrantManifestSection {
  const q = manifest.qdrant as Partial<QdrantManifestSection> | undefined;
  const bad = (msg: string) => new AgentVaultError('QDRANT_MANIFEST', `${label}: manifest ${msg}`, { kind: 'failed', location: { entry: 'manifest.json' } });
  if (!q || typeof q !== 'object') throw usageError(`${label} contains no Qdrant collections (its manifest has no "qdrant" section)`);
  if (!Array.isArray(q.collections)) throw bad('"qdrant.collections" is missing or not a list');
  if (typeof q.server_version !== 'string') throw bad('"qdrant.server_version" is missing');
  const seen = new Set<string>();
  q.collections.forEach((c, i) => {
    const at = `"qdrant.collections[${i}]"`;
    if (typeof c !== 'object' || c === null) throw bad(`${at} is not an object`);
    if (typeof c.name !== 'string' || c.name === '') throw bad(`${at}.name is missing`);
    if (seen.has(c.name)) throw bad(`${at}: collection '${c.name}' appears twice`);
    seen.add(c.name);
    if (!Number.isInteger(c.points_count) || c.points_count < 0) throw bad(`${at}.points_count must be a whole number ≥ 0`);
    if (c.points_count_exact !== undefined && typeof c.points_count_exact !== 'boolean') throw bad(`${at}.points_count_exact must be true or false`);
    if (c.points_exported !== undefined && (!Number.isInteger(c.points_exported) || c.points_exported < 0)) throw bad(`${at}.points_exported must be a whole number ≥ 0`);
    if (typeof c.snapshot_entry !== 'string') throw bad(`${at}.snapshot_entry is missing`);
    if (typeof c.snapshot_sha256 !== 'string' || !HEX64.test(c.snapshot_sha256)) throw bad(`${at}.snapshot_sha256 must be 64 lowercase hex digits`);
    if (c.points_entry !== undefined && (typeof c.points_entry !== 'string' || c.points_format !== POINTS_FORMAT))
      throw bad(`${at}.points_entry/points_format is invalid (expected format ${POINTS_FORMAT})`);
    if (c.aliases !== undefined && (!Array.isArray(c.aliases) || !c.aliases.every((a) => typeof a === 'string' && /^[A-Za-z0-9_.-]{1,255}$/.test(a))))
      throw bad(`${at}.aliases must be a list of alias names`);
    checkManifestFingerprint(c.fingerprint, c.fingerprint_sha256, `${at} ('${c.name}')`);
  });
  return q as QdrantManifestSection;
}

function minor(v: string): string {
  return v.split('.').slice(0, 2).join('.');
}

async function collectionExists(conn: QdrantConnection, name: string): Promise<boolean> {
  const r = await conn.call(`checking whether collection '${name}' exists`, (c) => c.collectionExists(name), { retry: true });
  return r.exists;
}

async function serverFingerprint(conn: QdrantConnection, name: string): Promise<CollectionFingerprint> {
  const info = await conn.call(`reading collection '${name}'`, (c) => c.getCollection(name), { retry: true });
  return fingerprintFromInfo(info, name);
}

/** Creates an empty collection with the fingerprint's settings and payload indexes. */
export async function createCollectionFromFingerprint(conn: QdrantConnection, name: string, fp: CollectionFingerprint): Promise<void> {
  conn.onProgress({ phase: 'create', collection: name });
  const body = createCollectionBody(fp);
  // Through the generated API (the client's createCollection drops some fields).
  await conn.call(`creating collection '${name}'`, (c) => c.api().createCollection({ collection_name: name, ...body }));
  await setParamsNotCreated(conn, name, fp);
  for (const idx of payloadIndexRequests(fp)) {
    await conn.call(`creating payload index '${idx.field_name}' on '${name}'`, (c) => c.createPayloadIndex(name, { wait: true, ...idx }));
  }
}

/**
 * Sets the params a create request cannot carry (read fan-out factor and delay) on a collection
 * that was just created, by us or by Qdrant recovering a snapshot into a missing name (recover.rs
 * creates it through that same request, so these settings of the snapshot are dropped).
 */
export async function setParamsNotCreated(conn: QdrantConnection, name: string, fp: CollectionFingerprint): Promise<void> {
  const patch = paramsNotCreatedPatch(fp);
  if (!patch) return;
  await conn.call(`setting ${Object.keys(patch.params ?? {}).join(', ')} of '${name}' (PATCH /collections/${name})`, (c) => c.updateCollection(name, patch), { retry: true });
}

/** Streams an archive entry to `dest`, returning its SHA-256 and size. */
async function extractEntry(reader: ArchiveSource, entry: string, dest: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const src = await reader.openStream(entry);
  await pipeline(src as Readable, tap, createWriteStream(dest));
  return { sha256: hash.digest('hex'), size };
}

async function hashEntry(reader: ArchiveSource, entry: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await reader.openStream(entry)) as Readable) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function restoreCollectionsFromSource(reader: ArchiveSource, conn: QdrantConnection, opts: QdrantRestoreOptions = {}): Promise<QdrantRestoreResult> {
  const label = opts.archiveLabel ?? 'archive';
  const section = readQdrantSection(reader.manifest, label);
  const available = section.collections.map((c) => c.name);
  const wanted = opts.collections && opts.collections.length ? [...new Set(opts.collections)] : available;
  const unknown = wanted.filter((w) => !available.includes(w));
  if (unknown.length) throw usageError(`${label} has no Qdrant collection ${unknown.map((u) => `'${u}'`).join(', ')}`, `It contains: ${available.join(', ') || '(none)'}`);
  if (opts.targetName !== undefined) {
    if (wanted.length !== 1) throw usageError(`A target name (targetName) needs exactly one collection; ${wanted.length} selected`, undefined, 'select-collection');
    if (!/^[A-Za-z0-9_.-]{1,255}$/.test(opts.targetName)) throw usageError(`Target name '${opts.targetName}' is not a valid collection name (letters, digits, _ . - only)`);
  }
  const chosen = section.collections.filter((c) => wanted.includes(c.name));
  for (const c of chosen) {
    const entry = opts.fromPoints ? c.points_entry : c.snapshot_entry;
    if (opts.fromPoints && !entry) throw usageError(`Collection '${c.name}' in ${label} has no points export; it was backed up without its points export`, undefined, 'from-snapshot');
    if (!reader.has(entry!)) throw verificationError(`${label}: entry ${entry} for collection '${c.name}' is listed in the manifest but missing from the archive`, { entry });
  }

  const serverVersion = await conn.serverVersion();
  if (!opts.fromPoints && minor(serverVersion) !== minor(section.server_version)) {
    conn.onProgress({
      phase: 'warning',
      message:
        `The snapshots were taken on Qdrant ${section.server_version}; this server runs ${serverVersion}. Snapshots may not load across versions` +
        (chosen.every((c) => c.points_entry) ? '; the archive also holds the portable points export, which restores across versions.' : '.'),
    });
  }

  const custom = chosen.filter((c) => c.fingerprint.sharding_method === 'custom');
  if (custom.length) {
    throw new AgentVaultError(
      'QDRANT_CLUSTER',
      `Collection${custom.length > 1 ? 's' : ''} ${custom.map((c) => `'${c.name}'`).join(', ')} in ${label} use${custom.length > 1 ? '' : 's'} custom sharding; a snapshot or points restore would not re-create their shard keys. Refused.`,
      {
        kind: 'usage',
        hint: 'Nothing was changed. Create the collection and its shard keys by hand, then restore the points with your own tooling.',
      },
    );
  }
  if (!opts.fromPoints) ensureSingleNodeForRestore(conn, await clusterInfo(conn));
  const serverAliases = await listAliases(conn);

  // ---- plan: existence, fingerprints, overwrite permission ----
  const items: PlannedItem[] = [];
  for (const c of chosen) {
    const target = opts.targetName ?? c.name;
    const exists = await collectionExists(conn, target);
    const item: PlannedItem = { source: c.name, target, exists, method: opts.fromPoints ? 'points' : 'snapshot', points_count: c.points_count, manifest: c, seq: items.length };
    if (exists) item.serverFingerprint = await serverFingerprint(conn, target);
    items.push(item);
  }
  const mismatches = items
    .filter((i) => i.exists)
    .map((i) => ({ i, diffs: diffFingerprints(i.manifest.fingerprint, i.serverFingerprint!) }))
    .filter((m) => m.diffs.length);
  if (mismatches.length) {
    throw new AgentVaultError(
      'QDRANT_FINGERPRINT_MISMATCH',
      mismatches.map((m) => `Collection '${m.i.target}' on the server does not match '${m.i.source}' in ${label}: ${formatDifferences(m.diffs)}`).join('\n'),
      { kind: 'mismatch', remedy: 'target-name', hint: 'Nothing was changed.' },
    );
  }
  // Aliases come back only when restoring under the archived name (a staging copy must not take them over).
  for (const i of items) {
    for (const alias of opts.targetName === undefined ? (i.manifest.aliases ?? []) : []) {
      if ((await collectionExists(conn, alias).catch(() => false)) && !serverAliases.has(alias)) {
        throw usageError(`Alias '${alias}' of '${i.source}' in ${label} cannot be restored: a collection of that name exists on Qdrant at ${conn.url}`, 'Nothing was changed.');
      }
      const now = serverAliases.get(alias);
      if (now !== undefined && now !== i.target && !opts.overwrite) {
        throw new AgentVaultError('QDRANT_TARGET_EXISTS', `Alias '${alias}' points at collection '${now}' on Qdrant at ${conn.url}; the archive has it pointing at '${i.source}'. Not changed.`, {
          kind: 'usage',
          remedy: 'repoint-alias',
        });
      }
    }
  }
  const existing = items.filter((i) => i.exists);
  if (existing.length && !opts.overwrite) {
    throw new AgentVaultError(
      'QDRANT_TARGET_EXISTS',
      `Collection${existing.length > 1 ? 's' : ''} ${existing.map((i) => `'${i.target}'`).join(', ')} already exist${existing.length > 1 ? '' : 's'} on Qdrant at ${conn.url}; not overwritten`,
      {
        kind: 'usage',
        remedy: 'replace-collections',
      },
    );
  }

  // ---- disk space for extracted snapshots and safety snapshots ----
  const parent = opts.workDir ?? tmpdir();
  let needed = 0;
  for (const i of items) {
    if (i.method === 'snapshot') needed += i.manifest.snapshot_size ?? 0;
    if (i.exists) needed += 2 * estimateCollectionBytes(i.serverFingerprint!, i.points_count, false);
  }
  await ensureFreeSpace(parent, needed, `restoring ${items.length} Qdrant collection(s)`, opts.statfs);

  const work = await mkdtemp(join(parent, 'agent-vault-qdrant-restore-'));
  let keepWork = false;
  try {
    // ---- verify checksums before any upload ----
    for (const i of items) {
      conn.onProgress({ phase: 'verify', collection: i.source });
      if (i.method === 'snapshot') {
        i.file = join(work, `${i.seq}-${encodeURIComponent(i.source)}.snapshot`);
        const got = await extractEntry(reader, i.manifest.snapshot_entry, i.file).catch((e: unknown) => {
          // The archive layer verifies size, CRC-32 and its own sha256 of every entry it streams.
          if (e instanceof AgentVaultError && e.code === 'checksum') {
            throw verificationError(`${e.message}. Nothing was uploaded.`, { entry: i.manifest.snapshot_entry, hint: e.hint });
          }
          throw e;
        });
        if (!opts.skipChecksumVerify && got.sha256 !== i.manifest.snapshot_sha256) {
          throw verificationError(
            `${label}: snapshot of collection '${i.source}' (${i.manifest.snapshot_entry}) failed its checksum: manifest sha256 ${i.manifest.snapshot_sha256}, extracted file sha256 ${got.sha256}. Nothing was uploaded.`,
            { entry: i.manifest.snapshot_entry, hint: 'The archive is damaged.', remedy: 'skip-checksum' },
          );
        }
      } else if (!opts.skipChecksumVerify && i.manifest.points_sha256) {
        const got = await hashEntry(reader, i.manifest.points_entry!);
        if (got !== i.manifest.points_sha256) {
          throw verificationError(
            `${label}: points export of '${i.source}' (${i.manifest.points_entry}) failed its checksum: manifest sha256 ${i.manifest.points_sha256}, got ${got}. Nothing was uploaded.`,
            { entry: i.manifest.points_entry },
          );
        }
      }
    }
    const plan: RestorePlanItem[] = items.map(({ source, target, exists, method, points_count }) => ({ source, target, exists, method, points_count }));
    if (opts.dryRun) return { dryRun: true, serverVersion, items: plan, checksumsVerified: !opts.skipChecksumVerify };

    // ---- apply, with a journal for rollback ----
    const st: ApplyState = { journal: [], safetySnapshots: [], uploads: [], aliases: new Map(serverAliases) };
    try {
      for (const i of items) await applyOne(conn, reader, i, work, st, opts);
    } catch (cause) {
      const failures: string[] = [];
      if (cause instanceof AmbiguousUploadError) {
        const wait = opts.recoveryWaitMs ?? Math.max(conn.uploadTimeoutMs, conn.timeoutMs);
        conn.onProgress({
          phase: 'warning',
          message: `The upload's outcome is unknown (${errorMessage(cause)}); polling '${cause.target}' for up to ${wait} ms until the server has finished before rolling back.`,
        });
        const outcome = await awaitRecoveryOutcome(conn, cause.target, cause.uploadName, cause.expectedCount, wait, opts.pollIntervalMs ?? opts.settleMs ?? DEFAULT_POLL_INTERVAL_MS);
        if (outcome === 'unknown') {
          failures.push(`'${cause.target}': the server had not finished the interrupted recovery after ${wait} ms; it may still complete later and overwrite the rolled-back state`);
        }
      }
      // Uploaded files first: once a collection is deleted its snapshot folder is no longer reachable through the API.
      await deleteUploads(conn, st.uploads);
      failures.push(...(await rollback(conn, st)));
      const leftovers = await deleteUploads(conn, st.uploads);
      if (cause instanceof AmbiguousUploadError && !failures.length) {
        // A recovery the server finished after our rollback would silently undo it: look again.
        failures.push(...(await checkRolledBack(conn, st.journal)));
      }
      if (failures.length) {
        keepWork = true;
        throw new AgentVaultError(
          'QDRANT_ROLLBACK_FAILED',
          `Restore failed: ${errorMessage(cause)}\nRollback did NOT complete:\n  ${failures.join('\n  ')}\n` +
            `Safety snapshots kept on the server: ${st.safetySnapshots.map((s) => `${s.collection}/${s.name}`).join(', ') || '(none)'}; local copies in ${work}` +
            (leftovers.length ? `\nUploaded snapshot files that could not be deleted: ${leftovers.join(', ')}` : ''),
          { kind: 'rollbackIncomplete', cause, hint: 'Recover the listed collections from their safety snapshots (POST /collections/{name}/snapshots/upload) before using them.' },
        );
      }
      leftovers.push(...(await cleanupSafetySnapshots(conn, st.safetySnapshots)));
      const undone = [...st.journal]
        .reverse()
        .map((j) =>
          j.kind === 'created'
            ? `deleted '${j.target}' (created by this restore)`
            : j.kind === 'existing'
              ? `recovered '${j.target}' to its previous state`
              : j.previous === undefined
                ? `removed alias '${j.alias}'`
                : `re-pointed alias '${j.alias}' to '${j.previous}'`,
        );
      throw new AgentVaultError(
        'QDRANT_RESTORE_ROLLED_BACK',
        `Restore failed and was rolled back: ${errorMessage(cause)}${undone.length ? `\nRolled back: ${undone.join('; ')}` : '\nNothing had been changed yet.'}` +
          (leftovers.length ? `\nSnapshot files left on the server (could not be deleted): ${leftovers.join(', ')}` : ''),
        { kind: 'rolledBack', cause },
      );
    }
    const leftovers = [...(await deleteUploads(conn, st.uploads)), ...(await cleanupSafetySnapshots(conn, st.safetySnapshots))];
    for (const l of leftovers) conn.onProgress({ phase: 'warning', message: `Snapshot file ${l} is left on the server; delete it by hand.` });
    return { dryRun: false, serverVersion, items: plan, checksumsVerified: !opts.skipChecksumVerify };
  } finally {
    if (!keepWork) await rm(work, { recursive: true, force: true });
  }
}

async function applyOne(conn: QdrantConnection, reader: ArchiveSource, i: PlannedItem, work: string, st: ApplyState, opts: QdrantRestoreOptions): Promise<void> {
  const fp = i.manifest.fingerprint;
  const checksum = opts.skipChecksumVerify ? undefined : i.manifest.snapshot_sha256;
  // Expected count: the points exported (points restore) or the snapshot's count when it is known exactly.
  const snapshotCount = i.manifest.points_count_exact === false ? undefined : i.points_count;
  if (i.exists) {
    const aliasesBefore = [...st.aliases]
      .filter(([, c]) => c === i.target)
      .map(([a]) => a)
      .sort();
    const before = { fingerprint: i.serverFingerprint!, points_count: await countPoints(conn, i.target), aliases: aliasesBefore };
    const snap = await createServerSnapshot(conn, i.target);
    st.safetySnapshots.push({ collection: i.target, name: snap.name });
    conn.onProgress({ phase: 'safety-snapshot', collection: i.target, snapshot: snap.name });
    // Numbered: names differing only in case must not collide on case-insensitive file systems.
    const safetyFile = join(work, `${i.seq}-${encodeURIComponent(i.target)}.safety.snapshot`);
    if (snap.size > 0) await ensureFreeSpace(work, 2 * snap.size, `the safety snapshot of '${i.target}'`, opts.statfs);
    const dl = await downloadSnapshot(conn, i.target, snap.name, safetyFile, { sha256: snap.checksum, size: snap.size });
    st.journal.push({ kind: 'existing', target: i.target, safetyFile, safetySha256: dl.sha256, before });
    // Destructive step from here on.
    if (i.method === 'points') {
      await conn.call(`deleting collection '${i.target}' before re-creating it`, (c) => c.deleteCollection(i.target));
      for (const a of aliasesBefore) st.aliases.delete(a);
      await createCollectionFromFingerprint(conn, i.target, fp);
      await changeAliases(
        conn,
        `re-creating the aliases of '${i.target}'`,
        aliasesBefore.map((alias) => ({ create_alias: { alias_name: alias, collection_name: i.target } })),
      );
      for (const a of aliasesBefore) st.aliases.set(a, i.target);
      await upsertFromArchive(conn, reader, i);
    } else {
      // Qdrant keeps this collection's config and replaces its data; the plan checked the config equals the archive's.
      await uploadTracked(conn, st, i.target, i.file!, checksum, 'restore', snapshotCount);
    }
  } else {
    st.journal.push({ kind: 'created', target: i.target });
    if (i.method === 'points') {
      await createCollectionFromFingerprint(conn, i.target, fp);
      await upsertFromArchive(conn, reader, i);
    } else {
      // Into a missing collection: Qdrant creates it from the snapshot's own config and payload indexes,
      // except the params a create request cannot carry, which are set afterwards.
      await uploadTracked(conn, st, i.target, i.file!, checksum, 'restore', snapshotCount);
      await setParamsNotCreated(conn, i.target, fp);
    }
  }
  const expected = i.method === 'points' ? i.imported : snapshotCount;
  await checkRestored(conn, i.target, fp, expected, `restored collection '${i.target}'`, { allowServerDefaults: true });
  // Aliases the archive records (only under the archived name; see the plan).
  for (const alias of opts.targetName === undefined ? (i.manifest.aliases ?? []) : []) {
    const previous = st.aliases.get(alias);
    if (previous === i.target) continue;
    await changeAliases(conn, `creating alias '${alias}' → '${i.target}'`, [{ create_alias: { alias_name: alias, collection_name: i.target } }]);
    st.journal.push({ kind: 'alias', target: i.target, alias, previous });
    st.aliases.set(alias, i.target);
  }
}

/**
 * A failure whose outcome on the server is unknown: the upload timed out or the connection broke,
 * so the server may still be recovering the snapshot (a client-side abort does not stop it:
 * src/actix/helpers.rs `time_or_accept` runs the recovery in a spawned task).
 */
class AmbiguousUploadError extends AgentVaultError {
  target = '';
  uploadName = '';
  expectedCount: number | undefined;
}

/** Uploads `file` under a unique name, recorded for deletion; deletes it again right after a definite answer. */
async function uploadTracked(conn: QdrantConnection, st: ApplyState, target: string, file: string, checksum: string | undefined, tag: string, expectedCount: number | undefined): Promise<void> {
  conn.onProgress({ phase: 'upload', collection: target });
  const rec: UploadRecord = { collection: target, name: uploadNameFor(target, tag), deleted: false };
  st.uploads.push(rec);
  try {
    await uploadSnapshot(conn, target, file, { checksum, uploadName: rec.name });
  } catch (e) {
    const err = qdrantCallError(`recovering collection '${target}' from the uploaded snapshot`, conn.url, e);
    if (isTimeoutError(e) || isNetworkError(e)) {
      const amb = new AmbiguousUploadError(err.code, err.message, { kind: err.kind, hint: err.hint, cause: e });
      amb.target = target;
      amb.uploadName = rec.name;
      amb.expectedCount = expectedCount;
      throw amb;
    }
    throw err;
  }
  await deleteUploads(conn, [rec]);
}

/** Deletes the uploaded files not deleted yet; returns `collection/name` of those that could not be. */
async function deleteUploads(conn: QdrantConnection, uploads: UploadRecord[]): Promise<string[]> {
  const left: string[] = [];
  for (const u of uploads) {
    if (u.deleted) continue;
    const err = await deleteUploadedSnapshot(conn, u.collection, u.name);
    if (err === undefined) u.deleted = true;
    else left.push(`${u.collection}/${u.name} (${err})`);
  }
  return left;
}

/**
 * Recoveries of `collection` the server is running now, from `GET /telemetry?details_level=2`
 * (`collections.snapshots[].running_snapshot_recovery`: recover.rs measures the whole recovery,
 * download and unpacking included, lib/storage/src/content_manager/toc/telemetry.rs). Undefined when
 * the server does not report it (older versions, or a key without access to telemetry).
 */
async function runningRecoveries(conn: QdrantConnection, collection: string): Promise<number | undefined> {
  try {
    const r = await conn.call('reading the running snapshot recoveries (GET /telemetry)', (c) => c.api().telemetry({ details_level: 2 }));
    const snaps = r.data.result?.collections?.snapshots;
    if (!Array.isArray(snaps)) return undefined;
    const entry = snaps.find((s) => s.id === collection);
    // No entry: no recovery of this collection has started since the server started.
    if (!entry) return 0;
    return typeof entry.running_snapshot_recovery === 'number' ? entry.running_snapshot_recovery : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Polls until the server has finished an interrupted recovery of `target`. The uploaded file is in
 * the collection's snapshot folder (saved before recovery starts: snapshot_api.rs upload_snapshot),
 * and then:
 * - where the server reports its running recoveries (telemetry), none of `target` is running, on two
 *   polls in a row (the file is listed a moment before the recovery is counted) — the shard state
 *   and point count alone cannot tell a recovery still unpacking the snapshot (shards untouched)
 *   from one that has finished;
 * - otherwise, no local shard is in a recovery state any more (recover.rs sets them to
 *   ManualRecovery or Partial once the snapshot is unpacked, then Active, or Dead on failure), with
 *   the snapshot's point count when it is known.
 * Returns 'unknown' when `waitMs` passes first.
 */
async function awaitRecoveryOutcome(conn: QdrantConnection, target: string, uploadName: string, expected: number | undefined, waitMs: number, intervalMs: number): Promise<'settled' | 'unknown'> {
  const deadline = Date.now() + waitMs;
  let idlePolls = 0;
  for (;;) {
    try {
      if (await collectionExists(conn, target)) {
        const listed = (await listServerSnapshots(conn, target)).some((d) => d.name === uploadName);
        const shards = (await conn.call(`reading the shard state of '${target}'`, (c) => c.collectionClusterInfo(target), { retry: true })).local_shards ?? [];
        const states = shards.map((s) => s.state);
        const failed = states.some((x) => x === 'Dead');
        const active = states.every((x) => x === 'Active');
        const running = listed ? await runningRecoveries(conn, target) : undefined;
        if (running !== undefined) {
          idlePolls = running === 0 && (failed || active) ? idlePolls + 1 : 0;
          if (idlePolls >= 2) return 'settled';
        } else if (listed && (failed || (active && (expected === undefined || (await countPoints(conn, target)) === expected)))) return 'settled';
      }
    } catch {
      // The server may be busy with the recovery; keep polling until the deadline.
    }
    if (Date.now() >= deadline) return 'unknown';
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}
async function upsertFromArchive(conn: QdrantConnection, reader: ArchiveSource, i: PlannedItem): Promise<void> {
  const entry = i.manifest.points_entry!;
  const stream = (await reader.openStream(entry)) as Readable;
  const n = await importPoints(conn, i.target, stream instanceof Readable ? stream : Readable.from(stream), entry);
  i.imported = n;
  if (i.manifest.points_exported !== undefined && n !== i.manifest.points_exported) {
    throw verificationError(`${entry}: ${n} points read, the manifest records ${i.manifest.points_exported} exported`, { entry });
  }
}

/** Fails unless `name` has exactly the fingerprint and (when given) point count. */
async function checkRestored(conn: QdrantConnection, name: string, fp: CollectionFingerprint, count: number | undefined, what: string, opts: { allowServerDefaults?: boolean } = {}): Promise<void> {
  const actual = await serverFingerprint(conn, name);
  const diffs = diffFingerprints(fp, actual, opts);
  if (diffs.length) throw verificationError(`${what}: settings differ from the expected ones after recovery: ${formatDifferences(diffs)}`);
  if (count === undefined) return;
  const n = await countPoints(conn, name);
  if (n !== count) throw verificationError(`${what}: has ${n} points after recovery, expected ${count}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Re-checks that every journal entry is (still) undone; returns what is not. */
async function checkRolledBack(conn: QdrantConnection, journal: JournalEntry[]): Promise<string[]> {
  const failures: string[] = [];
  for (const j of journal) {
    try {
      if (j.kind === 'created') {
        if (await collectionExists(conn, j.target)) failures.push(`'${j.target}': exists again after the rollback deleted it (the server finished the interrupted recovery late)`);
      } else if (j.kind === 'existing') {
        await checkRestored(conn, j.target, j.before.fingerprint, j.before.points_count, `collection '${j.target}' after rollback (re-checked)`);
      }
    } catch (e) {
      failures.push(`'${j.target}': ${errorMessage(e)}`);
    }
  }
  return failures;
}

/**
 * Undoes the journal in reverse; returns a description of every step that failed. A pre-existing
 * collection is recovered from its safety snapshot in place when its config is still the one it
 * had (Qdrant keeps an existing collection's config on recovery); when the config changed, it is
 * deleted and recovered into the missing name, so Qdrant rebuilds it from the safety snapshot's
 * own config, and its aliases are put back.
 */
async function rollback(conn: QdrantConnection, st: ApplyState): Promise<string[]> {
  const failures: string[] = [];
  for (const j of [...st.journal].reverse()) {
    try {
      if (j.kind === 'alias') {
        conn.onProgress({ phase: 'rollback', collection: j.target, action: 'delete' });
        const actions: Schemas['AliasOperations'][] = j.previous === undefined ? [{ delete_alias: { alias_name: j.alias } }] : [{ create_alias: { alias_name: j.alias, collection_name: j.previous } }];
        await changeAliases(conn, `restoring alias '${j.alias}' (rollback)`, actions);
        if (j.previous === undefined) st.aliases.delete(j.alias);
        else st.aliases.set(j.alias, j.previous);
      } else if (j.kind === 'created') {
        conn.onProgress({ phase: 'rollback', collection: j.target, action: 'delete' });
        if (await collectionExists(conn, j.target)) {
          await conn.call(`deleting collection '${j.target}' (rollback)`, (c) => c.deleteCollection(j.target), { retry: true });
        }
      } else {
        conn.onProgress({ phase: 'rollback', collection: j.target, action: 'recover' });
        const exists = await collectionExists(conn, j.target);
        const same = exists && diffFingerprints(j.before.fingerprint, await serverFingerprint(conn, j.target)).length === 0;
        if (exists && !same) {
          await deleteUploads(conn, st.uploads);
          await conn.call(`deleting collection '${j.target}' to rebuild it from its safety snapshot (rollback)`, (c) => c.deleteCollection(j.target), { retry: true });
        }
        const rec: UploadRecord = { collection: j.target, name: uploadNameFor(j.target, 'rollback'), deleted: false };
        st.uploads.push(rec);
        // Recovering overwrites the whole collection, so repeating it after a transient failure is safe.
        await conn.withRetry(`recovering '${j.target}' from its safety snapshot`, () => uploadSnapshot(conn, j.target, j.safetyFile, { checksum: j.safetySha256, uploadName: rec.name }));
        await deleteUploads(conn, [rec]);
        if (!same) await setParamsNotCreated(conn, j.target, j.before.fingerprint);
        if (!same) {
          const current = await listAliases(conn);
          const missing = j.before.aliases.filter((a) => current.get(a) !== j.target);
          await changeAliases(
            conn,
            `re-creating the aliases of '${j.target}' (rollback)`,
            missing.map((alias) => ({ create_alias: { alias_name: alias, collection_name: j.target } })),
          );
        }
        await checkRestored(conn, j.target, j.before.fingerprint, j.before.points_count, `collection '${j.target}' after rollback`);
      }
    } catch (e) {
      const what =
        j.kind === 'created'
          ? 'could not delete the collection created by this restore'
          : j.kind === 'existing'
            ? 'could not recover it from its safety snapshot'
            : `could not restore alias '${j.alias}'`;
      failures.push(`'${j.target}': ${what} — ${errorMessage(e)}`);
    }
  }
  return failures;
}

/** Deletes the safety snapshots; returns `collection/name` of those that could not be deleted. */
async function cleanupSafetySnapshots(conn: QdrantConnection, snaps: { collection: string; name: string }[]): Promise<string[]> {
  const left: string[] = [];
  for (const s of snaps) {
    await deleteServerSnapshot(conn, s.collection, s.name).catch((e: unknown) => {
      left.push(`${s.collection}/${s.name}`);
      conn.onProgress({ phase: 'warning', message: `Could not delete safety snapshot '${s.name}' of '${s.collection}': ${errorMessage(e)}` });
    });
  }
  return left;
}
