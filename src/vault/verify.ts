/**
 * `agent-vault verify [--deep]`: is every snapshot of the vault intact and restorable?
 *
 * Per snapshot (always): the file exists with the size and sha256 the index recorded; the
 * manifest passes its schema and agrees with the zip directory and with the index; every entry's
 * stored bytes match their size, sha256 and CRC-32; for an encrypted snapshot, the key opens it
 * (key check) and the manifest authenticates (HMAC).
 * With `deep`: every entry is also read through (decrypted and authenticated), every agent
 * file is validated against the .af v2 schema and the validator's reference checks (the same
 * ones `agent-vault validate` and `drill` run), each agent's counts (messages, in-context
 * messages, blocks, tools, passages) are compared with the manifest, every vector is decoded
 * (finite values, one per passage), and the recorded probes are replayed against the archive's
 * own vectors (brute force, the drill's vector-search check without a database).
 * Holds a shared lock (prune waits for it); sweeps temp files of interrupted runs (this
 * project's own names only). Also reported: archives in snapshots/ that the index does not list.
 */
import { promises as fsp } from 'node:fs';
import { AgentVaultError, errorMessage } from '../core/errors';
import { openArchive, type ArchiveReader } from '../format/archive';
import type { DecryptOptions } from '../format/crypto';
import { parseAgentFileBytes } from '../format/af';
import { checkV2References, validateParsed } from '../format/validate';
import { mergeAgentFiles, passageEntries, readPassages } from '../format/pack';
import type { AgentFileV2 } from '../format/types';
import { readProbes, replayProbes } from './probes';
import { readIndex, snapshotPath, sweepTempFiles, unlistedFiles, withSharedLock, type SnapshotRecord } from './vault';
import { fileSha256 } from '../core/hash';

export type VerifyCheckName = 'file' | 'sha256' | 'manifest' | 'index' | 'decrypt' | 'checksums' | 'schemas' | 'counts' | 'passages' | 'probes';

export interface VerifyCheck {
  name: VerifyCheckName;
  ok: boolean;
  message?: string;
}

export interface SnapshotVerifyResult {
  id: string;
  file: string;
  encrypted: boolean;
  ok: boolean;
  checks: VerifyCheck[];
}

export interface VerifyReport {
  vault: string;
  deep: boolean;
  ok: boolean;
  snapshots: SnapshotVerifyResult[];
  /** Archives in snapshots/ that the index does not list (`rebuild-index` or the next backup lists them again after verifying them). */
  unlisted: string[];
  /** Temp files of interrupted runs (this project's own names) that were removed. */
  leftovers: string[];
  /** Other files in snapshots/ (not written by this project; left alone). */
  foreign: string[];
  duration_ms: number;
}

export interface VerifyOptions {
  deep?: boolean;
  decrypt?: DecryptOptions;
  /** Only these snapshot ids (default: all). */
  only?: string[];
  /** Wait this long for a running backup/prune (default 0: refuse with 'locked'). */
  waitMs?: number;
  onSnapshot?: (r: SnapshotVerifyResult) => void;
}

/** Checks one archive file (vault-independent parts); `rec` adds the index comparisons. */
export async function verifyArchive(file: string, opts: { deep?: boolean; decrypt?: DecryptOptions; rec?: SnapshotRecord } = {}): Promise<VerifyCheck[]> {
  const checks: VerifyCheck[] = [];
  const rec = opts.rec;
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    checks.push({ name: 'file', ok: false, message: `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the archive file is missing' : errorMessage(e)}` });
    return checks;
  }
  if (rec && st.size !== rec.bytes) {
    checks.push({ name: 'file', ok: false, message: `${file} is ${st.size} bytes, the index records ${rec.bytes}` });
  } else checks.push({ name: 'file', ok: true });
  if (rec) {
    const { sha256 } = await fileSha256(file);
    checks.push(sha256 === rec.sha256 ? { name: 'sha256', ok: true } : { name: 'sha256', ok: false, message: `${file}: sha256 is ${sha256}, the index records ${rec.sha256}` });
  }
  let reader: ArchiveReader;
  try {
    reader = await openArchive(file, { decrypt: opts.decrypt && { ...opts.decrypt, requireEncrypted: rec?.encrypted ?? opts.decrypt.requireEncrypted } });
  } catch (e) {
    const code = e instanceof AgentVaultError ? e.code : '';
    const name: VerifyCheckName = code === 'wrong-key' || code === 'tampered' || code === 'not-encrypted' || code === 'unsupported-encryption' || code === 'encryption' ? 'decrypt' : 'manifest';
    checks.push({ name, ok: false, message: errorMessage(e) });
    return checks;
  }
  try {
    checks.push({ name: 'manifest', ok: true });
    if (rec) {
      const problems: string[] = [];
      if (rec.encrypted !== reader.encrypted) problems.push(`the index says ${rec.encrypted ? 'encrypted' : 'not encrypted'}, the archive is ${reader.encrypted ? 'encrypted' : 'not encrypted'}`);
      const want = rec.agents
        .map((a) => a.id)
        .sort()
        .join(',');
      const got = reader.manifest.agents
        .map((a) => a.id)
        .sort()
        .join(',');
      if (want !== got) problems.push(`agents differ from the index (index: ${want || 'none'}; manifest: ${got || 'none'})`);
      checks.push(problems.length ? { name: 'index', ok: false, message: `${file}: ${problems.join('; ')}` } : { name: 'index', ok: true });
    }
    if (reader.encrypted) {
      checks.push(reader.decryptable ? { name: 'decrypt', ok: true } : { name: 'decrypt', ok: false, message: `${file} is encrypted and no passphrase or key was given: decryptability not checked` });
    }
    // checksums of the stored bytes; with a key and deep, decrypted too (verifyAll does both)
    const results = opts.deep ? await reader.verifyAll() : await storedChecksums(reader);
    const bad = results.filter((r) => !r.ok);
    checks.push(bad.length ? { name: 'checksums', ok: false, message: bad.map((b) => b.error ?? b.entry).join('; ') } : { name: 'checksums', ok: true });
    if (opts.deep && bad.length === 0 && reader.decryptable) {
      const files = await checkAgentFiles(reader);
      checks.push(files.check);
      checks.push(files.counts);
      checks.push(await deepPassages(reader));
      checks.push(await deepProbes(reader));
    }
  } finally {
    await reader.close();
  }
  return checks;
}

/** Checksums of the stored bytes only (no decryption): cheap, needs no key. */
async function storedChecksums(reader: ArchiveReader): Promise<{ entry: string; ok: boolean; error?: string }[]> {
  const out: { entry: string; ok: boolean; error?: string }[] = [];
  const r = reader as ArchiveReader & { openStored?(name: string): Promise<NodeJS.ReadableStream> };
  for (const e of reader.manifest.entries) {
    try {
      const s = r.openStored ? await r.openStored(e.name) : await reader.openStream(e.name);
      for await (const _ of s as AsyncIterable<Buffer>) {
        /* the stream verifies */
      }
      out.push({ entry: e.name, ok: true });
    } catch (err) {
      out.push({ entry: e.name, ok: false, error: errorMessage(err) });
    }
  }
  return out;
}

function uniq(v: unknown): number {
  return Array.isArray(v) ? new Set(v.filter((x) => typeof x === 'string')).size : 0;
}

/** An agent file's own counts that the manifest records too (messages, in-context, blocks, tools). */
function countProblems(a: { id: string; entry: string; counts: Record<string, number> }, doc: AgentFileV2): string[] {
  // an archive's agent file holds one agent (its id inside the .af may be a file-local one)
  const list = (Array.isArray(doc.agents) ? doc.agents : []) as unknown as Array<Record<string, unknown>>;
  const agent = list.length === 1 ? list[0] : list.find((x) => x.id === a.id);
  if (!agent) return [`${a.entry} does not hold agent ${a.id}`];
  const got: Record<string, number> = {
    messages: Array.isArray(agent.messages) ? agent.messages.length : 0,
    in_context_messages: Array.isArray(agent.in_context_message_ids) ? agent.in_context_message_ids.length : 0,
    blocks: uniq(agent.block_ids),
    tools: uniq(agent.tool_ids),
  };
  const out: string[] = [];
  for (const k of Object.keys(got)) if (typeof a.counts[k] === 'number' && got[k] !== a.counts[k]) out.push(`agent ${a.id}: ${k} ${got[k]} in ${a.entry}, ${a.counts[k]} in the manifest`);
  return out;
}

/**
 * Every agent file against the .af v2 schema and the validator's reference checks
 * (src/format/validate.ts: the same checks as `agent-vault validate`), and each agent's counts
 * against the manifest. References are checked on the merged document: an agent's file may name
 * objects that live in another agent's file of the same archive (e.g. the other members of a
 * group), which is not a dangling reference. Used by `verify --deep` and by `drill`.
 */
export async function checkAgentFiles(reader: ArchiveReader): Promise<{ check: VerifyCheck; counts: VerifyCheck; problems: string[]; countFailures: string[] }> {
  const problems: string[] = [];
  const countFailures: string[] = [];
  const docs: AgentFileV2[] = [];
  for (const a of reader.manifest.agents) {
    try {
      const parsed = parseAgentFileBytes(await reader.readEntry(a.entry), `${reader.path}!${a.entry}`);
      if (parsed.format !== 'v2') problems.push(`${a.entry} is ${parsed.format}; archive entries must be plain .af v2`);
      else {
        docs.push(parsed.doc as AgentFileV2);
        countFailures.push(...countProblems(a as unknown as { id: string; entry: string; counts: Record<string, number> }, parsed.doc as AgentFileV2));
      }
      const rep = validateParsed(parsed);
      const errs = rep.errors.filter((f) => f.code !== 'dangling-reference');
      for (const f of errs.slice(0, 3)) problems.push(`${a.entry}: ${f.message}${f.pointer ? ` (at ${f.pointer})` : ''}`);
      if (errs.length > 3) problems.push(`${a.entry}: and ${errs.length - 3} more errors`);
    } catch (e) {
      problems.push(`${a.entry}: ${errorMessage(e)}`);
    }
  }
  if (docs.length) {
    try {
      const dangling = checkV2References(mergeAgentFiles(docs)).filter((f) => f.severity === 'error' && f.code === 'dangling-reference');
      for (const f of dangling.slice(0, 3)) problems.push(`merged agent files: ${f.message}`);
      if (dangling.length > 3) problems.push(`merged agent files: and ${dangling.length - 3} more dangling references`);
    } catch (e) {
      problems.push(`the agent files cannot be merged: ${errorMessage(e)}`);
    }
  }
  return {
    check: problems.length ? { name: 'schemas', ok: false, message: problems.join('; ') } : { name: 'schemas', ok: true },
    counts: countFailures.length
      ? { name: 'counts', ok: false, message: countFailures.slice(0, 5).join('; ') + (countFailures.length > 5 ? `; and ${countFailures.length - 5} more` : '') }
      : { name: 'counts', ok: true },
    problems,
    countFailures,
  };
}

async function deepPassages(reader: ArchiveReader): Promise<VerifyCheck> {
  const problems: string[] = [];
  for (const a of reader.manifest.agents) {
    for (const kind of ['archival', 'file'] as const) {
      const { jsonl, vectors } = passageEntries(a, kind);
      if (!jsonl) continue;
      const expected = kind === 'file' ? a.counts.file_passages : a.counts.passages;
      try {
        let n = 0;
        let dim = -1;
        for await (const rec of readPassages(reader, a, kind)) {
          n++;
          const v = rec.embedding;
          if (!v) continue;
          if (dim >= 0 && v.length !== dim) problems.push(`${vectors}: vector ${n} has ${v.length} dimensions, the ones before ${dim}`);
          dim = v.length;
          for (let i = 0; i < v.length; i++) {
            if (!Number.isFinite(v[i])) {
              problems.push(`${vectors}: vector ${n} holds a value that is not a finite number`);
              break;
            }
          }
        }
        if (expected !== undefined && n !== expected) problems.push(`${jsonl} has ${n} passages, the manifest counts ${expected}`);
      } catch (e) {
        problems.push(errorMessage(e));
      }
    }
  }
  return problems.length ? { name: 'passages', ok: false, message: problems.join('; ') } : { name: 'passages', ok: true };
}

async function deepProbes(reader: ArchiveReader): Promise<VerifyCheck> {
  try {
    const set = await readProbes(reader);
    if (!set) return { name: 'probes', ok: true, message: 'no probes recorded' };
    const ids = new Set(reader.manifest.agents.map((a) => a.id));
    const strangers = set.agents.filter((a) => !ids.has(a.agent_id)).map((a) => a.agent_id);
    if (strangers.length) return { name: 'probes', ok: false, message: `probes name agents the archive does not hold: ${strangers.join(', ')}` };
    const r = await replayProbes(reader, set);
    if (r.failures.length)
      return {
        name: 'probes',
        ok: false,
        message: `${r.total - r.passed} of ${r.total} recorded probe searches return other passages over the archive's vectors: ${r.failures.slice(0, 3).join('; ')}`,
      };
    return { name: 'probes', ok: true, message: `${r.passed}/${r.total} probe searches return the recorded passages` };
  } catch (e) {
    return { name: 'probes', ok: false, message: errorMessage(e) };
  }
}

export async function verifyVault(vaultDir: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  await readIndex(vaultDir); // "not a vault" before any lock file is created
  return withSharedLock(vaultDir, { command: opts.deep ? 'verify --deep' : 'verify', waitMs: opts.waitMs }, () => verifyLocked(vaultDir, opts));
}

async function verifyLocked(vaultDir: string, opts: VerifyOptions): Promise<VerifyReport> {
  const t0 = Date.now();
  const index = await readIndex(vaultDir);
  const leftovers = await sweepTempFiles(vaultDir);
  const results: SnapshotVerifyResult[] = [];
  const wanted = opts.only ? new Set(opts.only) : undefined;
  for (const rec of index.snapshots) {
    if (wanted && !wanted.has(rec.id)) continue;
    const file = snapshotPath(vaultDir, rec);
    let checks: VerifyCheck[];
    try {
      checks = await verifyArchive(file, { deep: opts.deep, decrypt: opts.decrypt, rec });
    } catch (e) {
      checks = [{ name: 'file', ok: false, message: errorMessage(e) }];
    }
    const r: SnapshotVerifyResult = { id: rec.id, file: rec.file, encrypted: rec.encrypted, ok: checks.every((c) => c.ok), checks };
    results.push(r);
    opts.onSnapshot?.(r);
  }
  const files = await unlistedFiles(vaultDir, index);
  return { vault: vaultDir, deep: !!opts.deep, ok: results.every((r) => r.ok), snapshots: results, unlisted: files.archives, leftovers, foreign: files.other, duration_ms: Date.now() - t0 };
}
