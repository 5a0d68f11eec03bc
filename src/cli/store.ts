/**
 * CLI for store vaults (docs/VAULT.md "Store vaults", src/vault/store-vault.ts): `vault init
 * --store`, `vault snapshots`, `vault export`, `vault migrate`, and the store branches of `backup`,
 * `prune`, `verify` and `drill` (called from ./vault.ts when the vault folder is a store vault).
 * Exit codes as docs/CLI.md: 0 ok, 1 a problem found (damage, a failed import), 2 usage, 74 I/O,
 * 75 locked.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { AgentVaultError, errorMessage } from '../core/errors';
import { decryptOptions, resolveKeyMaterial, writingKey, type KeySources, type VaultConfig } from '../vault/config';
import type { BackupOptions } from '../vault/backup';
import { describeReasons, type RetentionPolicy } from '../vault/retention';
import type { ArchiveReader } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { openStoreVaultSnapshot } from '../vault/store-read';
import { isS3Location } from '../vault/remote/location';
import type { StatusPolicy } from '../vault/config';
import type { VaultStatus } from '../vault/status';
import {
  copyStoreVault,
  exportStoreSnapshot,
  isStoreLocation,
  initStoreVault,
  isStoreVault,
  listStoreVault,
  migrateToStore,
  parseReadDataSubset,
  pruneStoreVault,
  storeBackup,
  storeVaultStatus,
  verifyStoreVault,
  type StoreBackupResult,
  type StoreVerifyReport,
} from '../vault/store-vault';
import type { VaultIndex } from '../vault/vault';
import type { CliContext } from './context';
import { EXIT, errorHints, exitCodeOf } from './exit';

export { isStoreVault, isStoreLocation };

/** A folder is made absolute (against the command's folder); an s3:// location stays as written. */
function loc(ctx: CliContext, v: string): string {
  return isS3Location(v) ? v : path.resolve(ctx.cwd, v);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

function report(ctx: CliContext, e: unknown, prefix: string): void {
  if (!(e instanceof AgentVaultError)) throw e;
  ctx.stderr(`agent-vault: ${prefix}${oneLine(e.message)}\n`);
  if (e.code !== 'locked') for (const h of errorHints(e)) ctx.stderr(`hint: ${h}\n`);
  ctx.exitCode = exitCodeOf(e);
}

interface KeyFlags {
  passphraseFile?: string;
  passphraseEnv?: string;
  keyFile?: string;
}

function keySources(ctx: CliContext, o: KeyFlags): KeySources {
  return { passphraseFile: o.passphraseFile, passphraseEnv: o.passphraseEnv, keyFile: o.keyFile, env: ctx.env, secrets: ctx.secrets };
}

function keyOptions(c: Command): Command {
  return c
    .option('--passphrase-file <file>', 'read the passphrase from this file')
    .option('--passphrase-env <NAME>', 'read the passphrase from this environment variable (default AGENT_VAULT_PASSPHRASE)')
    .option('--key-file <file>', 'use this 32-byte key file instead of a passphrase');
}

function waitArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new AgentVaultError('usage', `--wait must be a non-negative number, got "${v}"`, { kind: 'usage' });
  return n;
}

// ---------------------------------------------------------------------------------------------
// branches of the vault commands

/** What a store backup says about the agents it copied from the parent snapshot. */
export function reuseLine(u: StoreBackupResult['reuse']): string {
  const read = `${u.exported} agent(s) read from the database`;
  if (u.off) return `${read}; none copied from an earlier snapshot: ${u.off}`;
  if (!u.parent) return `${read}; no parent snapshot of this database in the store`;
  return `${u.reused} agent(s) unchanged, copied from parent snapshot ${u.parent} (store ${(u.parent_store_id ?? '').slice(0, 12)}); ${read}`;
}

/** `backup` of a config whose vault is a store vault. */
export async function storeBackupCommand(ctx: CliContext, opts: BackupOptions, o: { verbose?: boolean; json?: boolean }): Promise<void> {
  try {
    const r = await storeBackup(opts);
    for (const w of r.warnings) if (o.verbose || /prune: /.test(w)) ctx.stderr(`agent-vault: warning: ${oneLine(w)}\n`);
    if (o.json)
      ctx.stdout(
        JSON.stringify(
          {
            ok: true,
            store: true,
            snapshot: { id: r.id, store_id: r.snapshotId, created_at: r.created_at, agents: r.agents, encrypted: r.encrypted },
            bytes_read: r.ingest.bytesRead,
            bytes_copied: r.ingest.bytesCopied ?? 0,
            bytes_added: r.ingest.bytesAdded,
            new_chunks: r.ingest.newBlobs,
            chunks: r.ingest.blobs,
            export_ms: r.export_ms,
            ingest_ms: r.ingest_ms,
            reuse: r.reuse,
            duration_ms: r.duration_ms,
            pruned: r.pruned?.removed.map((x) => x.id) ?? null,
            warnings: r.warnings,
          },
          null,
          2,
        ) + '\n',
      );
    else if (o.verbose) {
      ctx.stdout(
        `snapshot ${r.id} (store ${r.snapshotId.slice(0, 12)}): ${r.agents.length} agent(s), ${r.ingest.bytesRead} bytes${r.ingest.bytesCopied ? ` (${r.ingest.bytesRead - r.ingest.bytesCopied} read, ${r.ingest.bytesCopied} copied unchanged from the parent snapshot)` : ' read'}, ${r.ingest.bytesAdded} bytes added to the store (${r.ingest.newBlobs} new of ${r.ingest.blobs} chunks)${r.encrypted ? ', encrypted' : ''}, ${(r.duration_ms / 1000).toFixed(1)} s\n`,
      );
      ctx.stdout(`${reuseLine(r.reuse)}\n`);
      if (r.pruned) ctx.stdout(`pruned ${r.pruned.removed.length} snapshot(s)\n`);
    }
    ctx.exitCode = EXIT.ok;
  } catch (e) {
    if (o.json) ctx.stdout(JSON.stringify({ ok: false, error: { code: (e as AgentVaultError).code ?? 'internal', message: errorMessage(e) } }, null, 2) + '\n');
    if (!(e instanceof AgentVaultError)) throw e;
    ctx.stderr(`agent-vault: backup failed: ${oneLine(e.message)}\n`);
    ctx.exitCode = exitCodeOf(e);
  }
}

/** `prune` on a store vault. */
export async function storePruneCommand(
  ctx: CliContext,
  vault: string,
  policy: RetentionPolicy,
  o: KeyFlags & { dryRun?: boolean; wait?: number; quiet?: boolean; json?: boolean },
  cfg?: VaultConfig,
): Promise<void> {
  try {
    const material = await resolveKeyMaterial(cfg?.encryption, keySources(ctx, o));
    const r = await pruneStoreVault(vault, { policy, dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000, material });
    if (o.json)
      ctx.stdout(
        JSON.stringify(
          {
            dry_run: r.dryRun,
            policy,
            kept: r.kept,
            removed: r.removed,
            unreadable: r.unreadable,
            sweep_skipped: r.sweepSkipped,
            bytes_before: r.bytesBefore,
            bytes_after: r.bytesAfter,
            sweep: r.sweep,
          },
          null,
          2,
        ) + '\n',
      );
    else {
      if (!o.quiet) {
        for (const d of r.plan.decisions) {
          const id = d.keep ? r.kept[r.plan.keep.indexOf(d)] : r.removed[r.plan.remove.indexOf(d)].id;
          if (d.keep) ctx.stdout(`keep   ${id}  ${d.created_at}  ${describeReasons(d.reasons)}\n`);
          else ctx.stdout(`${r.dryRun ? 'would delete' : 'delete'} ${id}  ${d.created_at}\n`);
        }
      }
      for (const u of r.unreadable) ctx.stdout(`KEEP   ${u.id}  fails verification, not counted for retention: ${oneLine(u.reason)}\n`);
      const sw = r.sweep;
      ctx.stdout(
        `${r.dryRun ? 'dry run: would keep' : 'kept'} ${r.kept.length + r.unreadable.length}, ${r.dryRun ? 'would delete' : 'deleted'} ${r.removed.length} snapshot(s)${sw ? `; swept ${sw.blobsRemoved} unreferenced chunk(s): ${sw.packsDeleted} pack(s) deleted, ${sw.packsRepacked} repacked; store ${mib(r.bytesBefore)} → ${mib(r.bytesAfter)}` : ''}\n`,
      );
    }
    if (r.unreadable.length)
      ctx.stderr(`agent-vault: prune: ${r.unreadable.length} snapshot(s) fail verification and were kept: ${r.unreadable.map((u) => u.id).join(', ')} (run "agent-vault verify")\n`);
    if (r.sweepSkipped) ctx.stderr(`agent-vault: prune: the sweep did not run: ${oneLine(r.sweepSkipped)} (run "agent-vault verify")\n`);
    ctx.exitCode = r.unreadable.length || r.sweepSkipped ? EXIT.failed : EXIT.ok;
  } catch (e) {
    report(ctx, e, 'prune failed: ');
  }
}

export function renderStoreVerify(r: StoreVerifyReport): string {
  let s = '';
  const name = (id: string): string => r.names[id] ?? id.slice(0, 12);
  for (const p of r.problems) {
    s += `DAMAGED ${p.kind} ${p.key}: ${oneLine(p.message)}\n`;
    if (p.snapshots.length) s += `  affects snapshot(s): ${p.snapshots.map(name).join(', ')}\n`;
    if (p.agents.length) s += `  affects agent(s): ${p.agents.map((a) => (r.agentNames[a] ? `${r.agentNames[a]} (${a})` : a)).join(', ')}\n`;
  }
  for (const w of r.warnings) s += `note: ${oneLine(w.message)}\n`;
  s += `${r.snapshots} snapshot(s), ${r.packs} pack(s), ${r.blobs} chunk(s) checked${r.packsRead ? `; ${r.packsRead} pack(s) read (${mib(r.bytesRead)})` : ''}: ${r.ok ? 'all ok' : `${r.problems.length} problem(s)`} (${(r.duration_ms / 1000).toFixed(1)} s)\n`;
  return s;
}

/** `--read-data-subset <n/m|p%>`, the flag named in its error. */
function readDataSubsetFlag(v: string): ReturnType<typeof parseReadDataSubset> {
  try {
    return parseReadDataSubset(v);
  } catch (e) {
    if (e instanceof AgentVaultError) throw new AgentVaultError(e.code, `--read-data-subset: ${e.message}`, { kind: e.kind, cause: e });
    throw e;
  }
}

/** `verify` on a store vault. */
export async function storeVerifyCommand(
  ctx: CliContext,
  vault: string,
  o: KeyFlags & { deep?: boolean; readData?: boolean; readDataSubset?: string; wait?: number; json?: boolean },
  cfg?: VaultConfig,
): Promise<void> {
  try {
    const material = await resolveKeyMaterial(cfg?.encryption, keySources(ctx, o));
    const r = await verifyStoreVault(vault, {
      readData: o.readData || o.deep,
      readDataSubset: o.readDataSubset ? readDataSubsetFlag(o.readDataSubset) : undefined,
      material,
      waitMs: (o.wait ?? 0) * 1000,
    });
    if (o.json) ctx.stdout(JSON.stringify(r, null, 2) + '\n');
    else ctx.stdout(renderStoreVerify(r));
    ctx.exitCode = r.ok ? EXIT.ok : EXIT.failed;
  } catch (e) {
    report(ctx, e, 'verify failed: ');
  }
}

/**
 * `<store vault>#<snapshot>` where `restore`, `diff` and `inspect` take an archive (the vault a
 * folder or s3://bucket/prefix): the snapshot is read in place from the store
 * (src/vault/store-read.ts: streamed, no temporary archive; in object storage by ranged reads of
 * its packs, a bounded local cache serving the second read), under the vault's shared lock until
 * the reader is closed. null for any other argument. `open` takes the store's key (an encrypted
 * store; default: AGENT_VAULT_PASSPHRASE).
 */
export async function storeArchiveArg(arg: string): Promise<{ open(decrypt?: DecryptOptions): Promise<ArchiveReader> } | null> {
  const at = arg.lastIndexOf('#');
  if (at <= 0) return null;
  const remote = isS3Location(arg);
  const dir = remote ? arg.slice(0, at) : path.resolve(arg.slice(0, at));
  if (remote ? !(await isStoreLocation(dir)) : !isStoreVault(dir)) return null;
  const ref = decodeURIComponent(arg.slice(at + 1));
  if (!ref) throw new AgentVaultError('usage', `${arg}: name the snapshot after "#" (an id, a unique id prefix, or "latest")`, { kind: 'usage' });
  return {
    open: async (decrypt) => {
      const hasKey = !!decrypt && (decrypt.passphrase !== undefined || decrypt.key !== undefined);
      const d = hasKey ? decrypt : decryptOptions(await resolveKeyMaterial(undefined, {}));
      return (await openStoreVaultSnapshot(dir, ref, { decrypt: d, command: `read ${ref}` })).reader;
    },
  };
}

/** `status` of a store vault (folder or s3://): its snapshots as an index (the key from the configuration or AGENT_VAULT_PASSPHRASE for an encrypted store). */
export async function storeStatusFor(ctx: CliContext, vault: string, policy: StatusPolicy, cfg?: VaultConfig): Promise<{ status: VaultStatus; index: VaultIndex }> {
  return storeVaultStatus(vault, policy, decryptOptions(await resolveKeyMaterial(cfg?.encryption, { env: ctx.env, secrets: ctx.secrets })));
}

/** `vault copy` when a side is a store vault (docs/VAULT.md "Copying store vaults"). */
export async function storeCopyCommand(ctx: CliContext, from: string, to: string, o: KeyFlags & { snapshot?: string[]; dryRun?: boolean; wait?: number; json?: boolean }): Promise<void> {
  try {
    const material = await resolveKeyMaterial(undefined, keySources(ctx, o));
    const r = await copyStoreVault(loc(ctx, from), loc(ctx, to), { snapshots: o.snapshot, dryRun: o.dryRun, waitMs: (o.wait ?? 0) * 1000, material });
    if (o.json) ctx.stdout(JSON.stringify({ ok: true, store: true, ...r }, null, 2) + '\n');
    else {
      for (const i of r.items)
        if (i.action !== 'skipped') ctx.stdout(`${i.action.padEnd(10)} ${r.names[i.snapshot] ?? i.snapshot}  ${i.packs} pack(s), ${i.bytes} bytes${i.action === 'copied' ? ', verified' : ''}\n`);
      ctx.stdout(
        `${o.dryRun ? 'dry run: ' : ''}${r.created ? 'store created at the target; ' : ''}${r.copied} snapshot(s) copied, ${r.skipped} already there; ${r.packsCopied} pack(s) copied (${mib(r.bytesCopied)}), ${r.packsPresent} already there → ${r.to}\n`,
      );
    }
    ctx.exitCode = EXIT.ok;
  } catch (e) {
    report(ctx, e, 'vault copy failed: ');
  }
}

// ---------------------------------------------------------------------------------------------
// vault subcommands

export function registerStoreCommands(vaultGroup: Command, ctx: CliContext): void {
  keyOptions(
    vaultGroup
      .command('init')
      .description('Make a vault folder a store vault: snapshots are kept as deduplicated, content-addressed chunks (docs/VAULT.md "Store vaults")')
      .requiredOption('--store', 'create the deduplicating store (the only kind of init so far)')
      .requiredOption('--vault <dir>', 'the vault: a folder (created when missing) or s3://bucket/prefix[?endpoint=URL&region=R&path-style=true]')
      .option('--encrypt', 'encrypt the store with the passphrase or key (needed to keep encrypted snapshots)'),
  )
    .addHelpText(
      'after',
      '\nExit codes: 0 created, 2 usage (it is a store vault already, no key for --encrypt, missing bucket), 3 S3 unreachable or credentials refused, 74 I/O error, 75 the vault is locked.',
    )
    .action(async (o: KeyFlags & { vault: string; encrypt?: boolean }) => {
      try {
        const vault = loc(ctx, o.vault);
        let key;
        if (o.encrypt) key = (await writingKey(await resolveKeyMaterial(undefined, keySources(ctx, o)), null)).key;
        const repo = await initStoreVault(vault, { key });
        ctx.stdout(`store vault created: ${repo.store.location.replace(/\/+$/, '')}/store${repo.crypto ? ' (encrypted)' : ''}\n`);
        ctx.exitCode = EXIT.ok;
      } catch (e) {
        report(ctx, e, 'vault init failed: ');
      }
    });

  keyOptions(
    vaultGroup
      .command('snapshots')
      .description('List the snapshots of a store vault (vault id, store id, time, size, agents)')
      .requiredOption('--vault <dir>', 'the store vault: a folder or s3://bucket/prefix')
      .option('--json', 'print the list as JSON'),
  ).action(async (o: KeyFlags & { vault: string; json?: boolean }) => {
    try {
      const material = await resolveKeyMaterial(undefined, keySources(ctx, o));
      const list = await listStoreVault(loc(ctx, o.vault), decryptOptions(material));
      if (o.json) ctx.stdout(JSON.stringify(list, null, 2) + '\n');
      else
        for (const s of list)
          ctx.stdout(
            s.error
              ? `${s.id}  UNREADABLE: ${oneLine(s.error)}\n`
              : `${s.vault_id}  ${s.id.slice(0, 12)}  ${s.created_at ?? s.time}  ${mib(s.size)}${s.source?.encrypted ? '  encrypted' : ''}  ${s.agents.map((a) => a.name ?? a.id).join(', ')}\n`,
          );
      ctx.exitCode = list.some((s) => s.error) ? EXIT.failed : EXIT.ok;
    } catch (e) {
      report(ctx, e, 'vault snapshots failed: ');
    }
  });

  keyOptions(
    vaultGroup
      .command('export')
      .description('Write a snapshot of a store vault as a portable single-file .avsnap archive (same manifest, byte-identical entries)')
      .argument('<snapshot>', 'snapshot id (or unique prefix), store id, or "latest"')
      .requiredOption('--vault <dir>', 'the store vault: a folder or s3://bucket/prefix')
      .requiredOption('-o, --out <file>', 'the archive to write')
      .option('--force', 'overwrite the output file')
      .option('--wait <seconds>', 'wait this long for a running prune instead of refusing', waitArg),
  )
    .addHelpText(
      'after',
      '\nA snapshot taken from an encrypted archive is written encrypted with the passphrase or key given.\nExit codes: 0 written, 1 the store is damaged (the entry named; nothing left behind), 2 usage (no such snapshot, output exists, no key), 74 I/O error, 75 a prune holds the vault.',
    )
    .action(async (snapshot: string, o: KeyFlags & { vault: string; out: string; force?: boolean; wait?: number }) => {
      try {
        const material = await resolveKeyMaterial(undefined, keySources(ctx, o));
        const r = await exportStoreSnapshot(loc(ctx, o.vault), snapshot, path.resolve(ctx.cwd, o.out), { material, overwrite: o.force, waitMs: (o.wait ?? 0) * 1000 });
        ctx.stdout(`wrote ${r.path}: snapshot ${r.id} (${r.bytes} bytes, ${r.manifest.entries.length} entries)\n`);
        ctx.exitCode = EXIT.ok;
      } catch (e) {
        report(ctx, e, 'vault export failed: ');
      }
    });

  keyOptions(
    vaultGroup
      .command('migrate')
      .description('Import every snapshot archive of a vault folder into its deduplicating store (created when missing); the archives are kept')
      .requiredOption('--vault <dir>', 'the vault folder')
      .option('--wait <seconds>', 'wait this long for a running backup or prune instead of refusing', waitArg)
      .option('--json', 'print the result as JSON'),
  )
    .addHelpText(
      'after',
      '\nEvery archive vault.json lists is read, put into the store, and read back from the store entry by entry against its manifest. Archives already imported (same SHA-256) are skipped, so it can be run again.\nNothing is deleted: snapshots/*.avsnap and vault.json stay as they were. Once "agent-vault verify --vault <dir> --read-data" passes, you may move them elsewhere (a portable copy) or delete them yourself.\nExit codes: 0 every archive imported, 1 an archive could not be imported (named; left in place), 2 usage (no key for encrypted snapshots), 74 I/O error, 75 the vault is locked.',
    )
    .action(async (o: KeyFlags & { vault: string; wait?: number; json?: boolean }) => {
      try {
        const vault = path.resolve(ctx.cwd, o.vault);
        const material = await resolveKeyMaterial(undefined, keySources(ctx, o));
        const r = await migrateToStore(vault, { material, waitMs: (o.wait ?? 0) * 1000, onProgress: o.json ? undefined : (m) => ctx.stderr(`migrate: ${m}\n`) });
        if (o.json) ctx.stdout(JSON.stringify(r, null, 2) + '\n');
        else {
          for (const i of r.imported) ctx.stdout(`imported ${i.id} → ${i.snapshot.slice(0, 12)}  ${i.bytesRead} bytes read, ${i.bytesAdded} bytes added, verified\n`);
          for (const s of r.skipped) ctx.stdout(`already in the store ${s}\n`);
          for (const f of r.failed) ctx.stdout(`FAILED ${f.id} (${f.file}): ${oneLine(f.reason)}\n`);
          ctx.stdout(
            `${r.created ? 'store created; ' : ''}${r.imported.length} imported, ${r.skipped.length} already there, ${r.failed.length} failed; archives ${mib(r.archiveBytes)} → store ${mib(r.storeBytes)}\n`,
          );
          ctx.stdout(
            `the archives in ${vault}/snapshots and vault.json were not changed; the vault now backs up into the store. Once "agent-vault verify --vault ${vault} --read-data" passes you may move the old archives elsewhere or delete them yourself.\n`,
          );
        }
        ctx.exitCode = r.failed.length ? EXIT.failed : EXIT.ok;
      } catch (e) {
        report(ctx, e, 'vault migrate failed: ');
      }
    });
}
