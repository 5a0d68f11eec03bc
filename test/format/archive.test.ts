import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as yazl from 'yazl';
import * as yauzl from 'yauzl';
import { AgentVaultError } from '../../src/core/errors';
import { readAgentFile, toV2 } from '../../src/format/af';
import {
  ARCHIVE_FORMAT_VERSION,
  agentEntryName,
  createArchiveWriter,
  entryNameProblem,
  openArchive,
  passagesEntryName,
  readManifest,
  safeEntrySegment,
  vectorsEntryName,
  type Manifest,
  type ManifestAgent,
} from '../../src/format/archive';
import { validateAnyPath } from '../../src/format/validate-any';
import { mergeAgentFiles, packAgentFile, readJsonLines, readPassages, splitAgentFile, unpackArchive } from '../../src/format/pack';
import {
  LETTA_PADDED_DIM,
  VECTOR_HEADER_SIZE,
  VectorWriter,
  encodeVectors,
  formatFloat32,
  formatPgVector,
  padTo,
  parsePgVector,
  readVectors,
  readVectorsStream,
  trimPadding,
} from '../../src/format/vectors';
import type { AgentFileV2, JsonObject } from '../../src/format/types';
import { fixtures } from '../helpers/paths';

// ---------------------------------------------------------------------------------------------
// helpers

let tmpRoot: string;
let counter = 0;
function tmp(name: string): string {
  return path.join(tmpRoot, `${counter++}-${name}`);
}
function tmpDir(name: string): string {
  const d = tmp(name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: string | string[], message?: RegExp): Promise<AgentVaultError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an AgentVaultError ${code}, nothing was thrown`);
  assert.ok(err instanceof AgentVaultError, `expected AgentVaultError, got ${(err as Error)?.stack ?? String(err)}`);
  const codes = Array.isArray(code) ? code : [code];
  assert.ok(codes.includes(err.code), `expected code ${codes.join('|')}, got ${err.code}: ${err.message}`);
  if (message) assert.match(err.message, message);
  return err;
}

/** Collections sorted by id (or content), so that order differences do not count. */
function normalise(doc: AgentFileV2): unknown {
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(doc));
  for (const k of ['agents', 'groups', 'blocks', 'files', 'sources', 'tools', 'mcp_servers', 'skills']) {
    const v = out[k];
    if (!Array.isArray(v)) continue;
    out[k] = [...v].sort((a, b) => {
      const ka = typeof a?.id === 'string' ? a.id : JSON.stringify(a);
      const kb = typeof b?.id === 'string' ? b.id : JSON.stringify(b);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
  }
  return out;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

interface RawEntry {
  name: string;
  data: Buffer;
  compress?: boolean;
}

/** A zip written directly with yazl (no Agent Vault checks): for hand-crafted bad archives. */
async function writeRawZip(file: string, entries: RawEntry[], comment?: string): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { compress: e.compress ?? true });
  zip.end(comment ? { forceZip64Format: false, comment } : undefined);
  await pipeline(zip.outputStream as Readable, fs.createWriteStream(file));
}

function manifestFor(entries: RawEntry[], extra: Partial<Manifest> = {}): Manifest {
  return {
    format: 'agent-vault-snapshot',
    format_version: ARCHIVE_FORMAT_VERSION,
    tool: { name: 'agent-vault', version: '0.0.0-test' },
    created_at: '2026-01-01T00:00:00.000Z',
    agents: [],
    entries: entries.map((e) => ({ name: e.name, size: e.data.length, sha256: sha256(e.data), media_type: 'application/octet-stream' })),
    ...extra,
  };
}

async function writeRawArchive(file: string, entries: RawEntry[], extra: Partial<Manifest> = {}): Promise<void> {
  const m = manifestFor(entries, extra);
  await writeRawZip(file, [...entries, { name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) }]);
}

/** Offset and length of an entry's (compressed) data inside the zip file. */
async function entryDataRange(file: string, name: string): Promise<{ start: number; length: number; method: number }> {
  const zip = await yauzl.openPromise(file, { autoClose: false });
  try {
    for await (const e of zip.eachEntry()) {
      if (e.fileName === name) {
        const h = await zip.readLocalFileHeaderPromise(e, { minimal: true });
        return { start: h.fileDataStart, length: e.compressedSize, method: e.compressionMethod };
      }
    }
  } finally {
    zip.close();
  }
  throw new Error(`no entry ${name}`);
}

async function copyWithFlip(src: string, offset: number): Promise<string> {
  const buf = await fsp.readFile(src);
  buf[offset] ^= 0x5a;
  const dest = tmp('flipped.zip');
  await fsp.writeFile(dest, buf);
  return dest;
}

function listTmpFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
}

/** Deterministic pseudo-random float32 rows (embedding-like values). */
function rows(n: number, dim: number, seed = 1): Float32Array[] {
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  return Array.from({ length: n }, () => Float32Array.from({ length: dim }, () => (rnd() - 0.5) * 0.2));
}

function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

before(() => {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'av-archive-test-'));
});
after(() => {
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('snapshot archive: .af round trip through pack/unpack', () => {
  const all = fixtures();

  it('covers all 24 fixtures', () => {
    assert.equal(all.length, 24);
  });

  for (const fx of all) {
    it(`${fx.file}: pack → unpack → merge gives back the same agents`, async () => {
      const original = toV2(await readAgentFile(fx.path));
      const archive = tmp(`${fx.file}.avsnap`);
      const res = await packAgentFile(fx.path, archive);
      assert.equal(res.path, path.resolve(archive));
      assert.equal(res.bytes, fs.statSync(archive).size);

      const manifest = await readManifest(archive);
      assert.deepEqual(manifest, res.manifest);
      assert.equal(manifest.format_version, ARCHIVE_FORMAT_VERSION);
      assert.equal(manifest.source?.kind, 'agent-file');
      assert.equal(manifest.source?.file_format, fx.format);
      assert.equal(manifest.source?.file_sha256, sha256(fs.readFileSync(fx.path)));
      assert.deepEqual(
        manifest.agents.map((a) => a.id),
        original.agents.map((a) => a.id),
      );
      for (const a of manifest.agents) {
        assert.equal(a.entry, `agents/${a.id}.af`);
        const src = original.agents.find((o) => o.id === a.id)!;
        assert.equal(a.counts.messages, (src.messages ?? []).length);
        assert.equal(a.counts.blocks, new Set(src.block_ids ?? []).size);
        assert.equal(a.counts.tools, new Set(src.tool_ids ?? []).size);
      }
      assert.deepEqual(
        manifest.entries.map((e) => e.name),
        manifest.agents.map((a) => a.entry),
      );

      const out = tmpDir('unpacked');
      const { files } = await unpackArchive(archive, out);
      assert.equal(files.length, original.agents.length);
      const docs: AgentFileV2[] = [];
      for (const f of files) {
        const parsed = await readAgentFile(f);
        assert.equal(parsed.format, 'v2', `${f} is a plain .af v2`);
        const doc = parsed.doc as AgentFileV2;
        assert.equal(doc.agents.length, 1);
        // self-contained: every block/tool the agent references (and the original has) is present
        const a = doc.agents[0];
        const has = (list: { id: string }[], id: string): boolean => list.some((o) => o.id === id);
        for (const id of a.block_ids ?? []) if (has(original.blocks, id)) assert.ok(has(doc.blocks, id), `${f}: block ${id}`);
        for (const id of a.tool_ids ?? []) if (has(original.tools, id)) assert.ok(has(doc.tools, id), `${f}: tool ${id}`);
        for (const id of a.group_ids ?? []) if (has(original.groups, id)) assert.ok(has(doc.groups, id), `${f}: group ${id}`);
        docs.push(doc);
      }
      assert.deepEqual(normalise(mergeAgentFiles(docs)), normalise(original));
    });
  }

  it('gives each agent of a multi-agent file only what it references (plus the unreferenced rest to the first)', async () => {
    const fx = all.find((f) => f.file === 'lettabot-builder.v2.af')!;
    const doc = toV2(await readAgentFile(fx.path));
    const slices = splitAgentFile(doc);
    assert.equal(slices.length, 2);
    const [s0, s1] = slices;
    // the sleeptime group names agent-1, which is in the other slice: it is kept in the extension
    // object, so that each slice is importable by Letta on its own (issue 12); merging puts it back
    assert.deepEqual(s0.doc.groups, []);
    assert.deepEqual(
      ((s0.doc as any).agent_vault.groups as Array<{ id: string }>).map((g) => g.id),
      ['group-0'],
    );
    assert.ok(!(s0.doc.agents[0].group_ids ?? []).includes('group-0'));
    assert.deepEqual(s1.doc.groups, []);
    assert.deepEqual(
      mergeAgentFiles([s0.doc, s1.doc]).groups.map((g) => g.id),
      ['group-0'],
    );
    assert.deepEqual(new Set(s1.doc.blocks.map((b) => b.id)), new Set(s1.agent.block_ids));
    assert.deepEqual(s1.doc.agents[0].messages?.length, 188);
    assert.equal(s0.doc.metadata?.revision_id, doc.metadata?.revision_id);
    assert.equal(s1.doc.metadata?.revision_id, doc.metadata?.revision_id);
  });

  it('a packed multi-agent file with a group across agents validates entry by entry (issue 12)', async () => {
    const fx = all.find((f) => f.file === 'lettabot-builder.v2.af')!;
    const out = path.join(tmpRoot, 'lettabot-builder-packed.avs');
    await packAgentFile(fx.path, out, { overwrite: true });
    const rep = await validateAnyPath(out);
    assert.deepEqual(
      rep.errors.map((e) => e.message),
      [],
    );
    assert.equal(rep.valid, true);
  });

  it('keeps ezra.v2.af blocks that no agent references (and its dangling group id)', async () => {
    const fx = all.find((f) => f.file === 'ezra.v2.af')!;
    const doc = toV2(await readAgentFile(fx.path));
    const [s] = splitAgentFile(doc);
    assert.equal(s.doc.blocks.length, 56);
    assert.equal(s.counts.blocks, 21);
    assert.equal(s.counts.groups, 0);
    assert.equal((s.doc.skills ?? []).length, 4);
  });

  it('void.v2.af: the agent brings its folder and file', async () => {
    const fx = all.find((f) => f.file === 'void.v2.af')!;
    const [s] = splitAgentFile(toV2(await readAgentFile(fx.path)));
    assert.equal(s.doc.sources.length, 1);
    assert.equal(s.doc.files.length, 1);
    assert.equal(s.counts.files, 1);
  });

  it('mergeAgentFiles refuses two different objects with the same id', () => {
    const a = { agents: [{ id: 'agent-0' }], groups: [], blocks: [{ id: 'block-0', label: 'human', value: 'A' }], files: [], sources: [], tools: [], mcp_servers: [] } as unknown as AgentFileV2;
    const b = { agents: [{ id: 'agent-1' }], groups: [], blocks: [{ id: 'block-0', label: 'human', value: 'B' }], files: [], sources: [], tools: [], mcp_servers: [] } as unknown as AgentFileV2;
    assert.throws(
      () => mergeAgentFiles([a, b]),
      (e: unknown) => e instanceof AgentVaultError && e.code === 'merge-conflict' && /block-0/.test(e.message),
    );
    const merged = mergeAgentFiles([a, { ...b, blocks: a.blocks } as AgentFileV2]);
    assert.deepEqual(
      merged.agents.map((x) => x.id),
      ['agent-0', 'agent-1'],
    );
    assert.equal(merged.blocks.length, 1);
  });

  it('unpack refuses to overwrite existing files without the flag, and writes nothing', async () => {
    const fx = all.find((f) => f.file === 'lettabot-builder.v2.af')!;
    const archive = tmp('lb.avsnap');
    await packAgentFile(fx.path, archive);
    const out = tmpDir('out');
    fs.writeFileSync(path.join(out, 'agent-1.af'), 'mine');
    await rejectsWith(unpackArchive(archive, out), 'exists', /agent-1\.af/);
    assert.deepEqual(fs.readdirSync(out).sort(), ['agent-1.af']);
    assert.equal(fs.readFileSync(path.join(out, 'agent-1.af'), 'utf8'), 'mine');
    const { files } = await unpackArchive(archive, out, { overwrite: true });
    assert.equal(files.length, 2);
    assert.equal((await readAgentFile(path.join(out, 'agent-1.af'))).format, 'v2');
    assert.deepEqual(listTmpFiles(out), []);
  });

  it('unpack with raw extracts every entry at its own path', async () => {
    const fx = all.find((f) => f.file === 'memgpt-agent.v1.af')!;
    const archive = tmp('raw.avsnap');
    await packAgentFile(fx.path, archive);
    const out = tmpDir('raw');
    const { files } = await unpackArchive(archive, out, { raw: true });
    assert.ok(files.includes(path.join(out, 'manifest.json')));
    assert.ok(files.includes(path.join(out, 'agents', 'agent-0.af')));
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Manifest;
    assert.equal(sha256(fs.readFileSync(path.join(out, 'agents', 'agent-0.af'))), m.entries[0].sha256);
  });
});

describe('snapshot archive: writer', () => {
  it('refuses an existing destination unless overwrite, leaving it untouched', async () => {
    const dest = tmp('exists.avsnap');
    fs.writeFileSync(dest, 'precious');
    await rejectsWith(createArchiveWriter(dest), 'exists', /already exists/);
    const fx = fixtures()[0];
    await rejectsWith(packAgentFile(fx.path, dest), 'exists');
    assert.equal(fs.readFileSync(dest, 'utf8'), 'precious');
    assert.deepEqual(listTmpFiles(path.dirname(dest)), []);
    await packAgentFile(fx.path, dest, { overwrite: true });
    assert.equal((await readManifest(dest)).agents.length, 1);
  });

  it('refuses a destination that appeared while writing (no overwrite), keeps it and removes the temp file', async () => {
    const dir = tmpDir('race');
    const dest = path.join(dir, 'x.avsnap');
    const w = await createArchiveWriter(dest);
    await w.addJson('a.json', { a: 1 });
    fs.writeFileSync(dest, 'someone else');
    await rejectsWith(w.finish({ agents: [] }), 'exists');
    assert.equal(fs.readFileSync(dest, 'utf8'), 'someone else');
    assert.deepEqual(listTmpFiles(dir), []);
  });

  it('removes the temp file when a stream fails mid-way, and names the entry', async () => {
    const dir = tmpDir('failing');
    const dest = path.join(dir, 'x.avsnap');
    const w = await createArchiveWriter(dest);
    await w.addJson('first.json', { ok: true });
    assert.equal(listTmpFiles(dir).length, 1, 'writes go to a temp file');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(300_000, 1);
      yield Buffer.alloc(300_000, 2);
      throw new Error('disk on fire');
    }
    const err = await rejectsWith(w.addStream('qdrant/big.snapshot', failing()), 'write-failed', /qdrant\/big\.snapshot.*disk on fire/);
    assert.equal(err.location?.entry, 'qdrant/big.snapshot');
    await rejectsWith(w.finish({ agents: [] }), 'write-failed');
    await w.abort();
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('abort() removes the temp file', async () => {
    const dir = tmpDir('abort');
    const w = await createArchiveWriter(path.join(dir, 'x.avsnap'));
    await w.addBuffer('a.bin', Buffer.alloc(1000));
    const p = w.addStream('b.bin', Readable.from([Buffer.alloc(10)]));
    await p;
    await w.abort();
    await w.abort();
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('validates the manifest before writing it (and removes the temp file when invalid)', async () => {
    const dir = tmpDir('badmanifest');
    const w = await createArchiveWriter(path.join(dir, 'x.avsnap'));
    await w.addJson('agents/agent-0.af', { agents: [] });
    const agent: ManifestAgent = {
      id: 'agent-0',
      name: null,
      entry: 'agents/agent-9.af',
      counts: { messages: 0, in_context_messages: 0, blocks: 0, tools: 0, passages: 0, groups: 0, files: 0 },
    };
    await rejectsWith(w.finish({ agents: [agent] }), 'manifest', /agents\/agent-9\.af/);
    assert.deepEqual(fs.readdirSync(dir), []);

    const w2 = await createArchiveWriter(path.join(dir, 'y.avsnap'));
    await rejectsWith(w2.finish({ agents: [{ id: 'a', entry: 'x' }] } as unknown as Manifest), 'manifest', /counts/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('rejects unsafe, duplicate and reserved entry names and plain-text secrets', async () => {
    const dir = tmpDir('names');
    const w = await createArchiveWriter(path.join(dir, 'x.avsnap'));
    for (const bad of ['../evil', '/abs', 'a/../../b', 'C:/x', 'a\\b', 'dir/', 'a//b', '', 'con.txt', 'x:y']) {
      await rejectsWith(w.addBuffer(bad, Buffer.alloc(1)), 'entry-name');
    }
    await rejectsWith(w.addBuffer('manifest.json', Buffer.alloc(1)), 'entry-name');
    await w.addBuffer('agents/a.af', Buffer.from('{}'));
    await rejectsWith(w.addBuffer('agents/a.af', Buffer.from('{}')), 'entry-name', /already/);
    await rejectsWith(w.addBuffer('agents/A.af', Buffer.from('{}')), 'entry-name', /case-insensitive/);
    await rejectsWith(w.addBuffer('secrets/env.json', Buffer.from('{"KEY":"v"}')), 'plaintext-secret');
    await rejectsWith(w.addStream('secrets/env.json', Readable.from([Buffer.from('x')])), 'plaintext-secret');
    const r = await w.finish({ agents: [] });
    assert.deepEqual(
      r.manifest.entries.map((e) => e.name),
      ['agents/a.af'],
    );
  });

  it('makes safe entry names from any id', () => {
    assert.equal(agentEntryName('agent-0'), 'agents/agent-0.af');
    assert.equal(agentEntryName('agent-3f1c7c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f'), 'agents/agent-3f1c7c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f.af');
    for (const id of ['../../etc/passwd', 'a/b', '..', 'CON', 'x:y', 'é']) {
      const seg = safeEntrySegment(id);
      assert.equal(entryNameProblem(`agents/${seg}.af`), null, `${id} → ${seg}`);
    }
    assert.notEqual(safeEntrySegment('a/b'), safeEntrySegment('a_b'));
  });

  it('deflates JSON and stores vectors, and says so in the manifest', async () => {
    const dest = tmp('methods.avsnap');
    const w = await createArchiveWriter(dest);
    await w.addJson('agents/a.af', { agents: [{ id: 'a', text: 'x'.repeat(10_000) }] });
    const vw = new VectorWriter({ dim: 8, count: 3 });
    const p = w.addStream('passages/a.vectors', vw.stream);
    for (const r of rows(3, 8)) await vw.append(r);
    await vw.end();
    const ve = await p;
    assert.equal(ve.size, VECTOR_HEADER_SIZE + 3 * 8 * 4);
    const { manifest } = await w.finish({ agents: [] });
    assert.deepEqual(
      manifest.entries.map((e) => [e.name, e.compression, e.media_type]),
      [
        ['agents/a.af', 'deflate', 'application/json'],
        ['passages/a.vectors', 'store', 'application/vnd.agent-vault.vectors'],
      ],
    );
    assert.equal((await entryDataRange(dest, 'agents/a.af')).method, 8);
    assert.equal((await entryDataRange(dest, 'passages/a.vectors')).method, 0);
    assert.equal((await entryDataRange(dest, 'manifest.json')).method, 8);
    // manifest.json is the last entry
    const zip = await yauzl.openPromise(dest);
    const names: string[] = [];
    for await (const e of zip.eachEntry()) names.push(e.fileName);
    zip.close();
    assert.equal(names[names.length - 1], 'manifest.json');
    assert.equal(fs.statSync(dest).mode & 0o777, 0o600);
  });
});

describe('snapshot archive: reader integrity', () => {
  let archive: string;
  const jsonName = 'agents/agent-0.af';
  const vecName = 'passages/agent-0.vectors';
  const jsonlName = 'passages/agent-0.jsonl';

  before(async () => {
    archive = tmp('integrity.avsnap');
    const w = await createArchiveWriter(archive);
    const blocks = Array.from({ length: 200 }, (_, i) => ({ id: `block-${i}`, label: `l${i}`, value: `value ${i} `.repeat(20) }));
    await w.addJson(jsonName, { agents: [{ id: 'agent-0' }], blocks, groups: [], files: [], sources: [], tools: [], mcp_servers: [] });
    await w.addStream(jsonlName, Readable.from(Array.from({ length: 50 }, (_, i) => Buffer.from(JSON.stringify({ id: `passage-${i}`, text: `t${i}` }) + '\n'))));
    const vw = new VectorWriter({ dim: 16, count: 50 });
    const p = w.addStream(vecName, vw.stream);
    for (const r of rows(50, 16)) await vw.append(r);
    await vw.end();
    await p;
    await w.finish({
      agents: [
        {
          id: 'agent-0',
          name: 'a',
          entry: jsonName,
          counts: { messages: 0, in_context_messages: 0, blocks: 200, tools: 0, passages: 50, groups: 0, files: 0 },
          passages_entry: jsonlName,
          vectors_entry: vecName,
        },
      ],
    });
  });

  it('reads and verifies every entry of an intact archive', async () => {
    const r = await openArchive(archive, { verifyEntries: true });
    try {
      assert.deepEqual(
        (await r.verifyAll()).map((x) => [x.entry, x.ok]),
        [
          ['manifest.json', true],
          [jsonName, true],
          [jsonlName, true],
          [vecName, true],
        ],
      );
      assert.equal(r.has(jsonName), true);
      assert.equal(r.has('nope'), false);
      await rejectsWith(r.readEntry('nope'), 'missing-entry', /nope/);
      const doc = await r.readJson<AgentFileV2>(jsonName);
      assert.equal(doc.blocks.length, 200);
      const recs = [];
      for await (const rec of readPassages(r, r.manifest.agents[0])) recs.push(rec);
      assert.equal(recs.length, 50);
      assert.ok(sameBytes(recs[7].embedding!, rows(50, 16)[7]));
      assert.equal(recs[7].passage.id, 'passage-7');
      // stopping early releases the entries
      for await (const rec of readPassages(r, r.manifest.agents[0])) if (rec.passage.id === 'passage-3') break;
      assert.deepEqual(
        r.list().map((e) => e.name),
        [jsonName, jsonlName, vecName],
      );
    } finally {
      await r.close();
    }
    // a stream the caller abandons does not keep the archive open
    const r2 = await openArchive(archive);
    const abandoned = await r2.openStream(vecName);
    abandoned.once('readable', () => undefined);
    await r2.close();
    await rejectsWith(r2.readEntry(jsonName), 'closed');
  });

  const cases: Array<{ what: string; entry: string; method: number }> = [
    { what: 'a deflated JSON entry', entry: jsonName, method: 8 },
    { what: 'a deflated JSONL entry', entry: jsonlName, method: 8 },
    { what: 'a stored vector entry', entry: vecName, method: 0 },
  ];
  for (const c of cases) {
    for (const where of [0.02, 0.5, 0.97]) {
      it(`one flipped byte in ${c.what} (at ${Math.round(where * 100)}% of its data) is a checksum error naming it`, async () => {
        const range = await entryDataRange(archive, c.entry);
        assert.equal(range.method, c.method);
        const bad = await copyWithFlip(archive, range.start + Math.floor(range.length * where));
        // the manifest is intact: listing still works
        const m = await readManifest(bad);
        assert.equal(m.entries.length, 3);
        const r = await openArchive(bad);
        try {
          const err = await rejectsWith(r.readEntry(c.entry), 'checksum');
          assert.ok(err.message.includes(JSON.stringify(c.entry)), err.message);
          assert.equal(err.location?.entry, c.entry);
          const s = await r.openStream(c.entry);
          const streamErr = await rejectsWith(
            (async () => {
              for await (const _ of s as AsyncIterable<Buffer>) {
                /* drain */
              }
            })(),
            'checksum',
          );
          assert.equal(streamErr.location?.entry, c.entry);
          const results = await r.verifyAll();
          const failed = results.filter((x) => !x.ok);
          assert.deepEqual(
            failed.map((x) => x.entry),
            [c.entry],
          );
          assert.ok(failed[0].error!.includes(c.entry));
          // other entries still read fine
          for (const other of [jsonName, jsonlName, vecName].filter((n) => n !== c.entry)) await r.readEntry(other);
        } finally {
          await r.close();
        }
        await rejectsWith(openArchive(bad, { verifyEntries: true }), 'checksum', new RegExp(c.entry.replace(/[.]/g, '\\.')));
      });
    }
  }

  for (const where of [0.1, 0.5, 0.9]) {
    it(`one flipped byte in manifest.json (at ${Math.round(where * 100)}%) is a checksum error naming it`, async () => {
      const range = await entryDataRange(archive, 'manifest.json');
      const bad = await copyWithFlip(archive, range.start + Math.floor(range.length * where));
      const err = await rejectsWith(readManifest(bad), 'checksum', /manifest\.json/);
      assert.equal(err.location?.entry, 'manifest.json');
      await rejectsWith(openArchive(bad), 'checksum', /manifest\.json/);
    });
  }

  it('a manifest without the sha256 comment is still checked by CRC-32', async () => {
    const buf = await fsp.readFile(archive);
    const stripped = tmp('nocomment.avsnap');
    // rewrite the archive without the comment (raw copy of entries)
    const r = await openArchive(archive);
    const entries: RawEntry[] = [];
    for (const e of r.manifest.entries) entries.push({ name: e.name, data: await r.readEntry(e.name), compress: e.compression === 'deflate' });
    await r.close();
    const manifestData = Buffer.from(JSON.stringify((await readManifest(archive)) as Manifest));
    await writeRawZip(stripped, [...entries, { name: 'manifest.json', data: manifestData, compress: false }]);
    assert.equal((await readManifest(stripped)).entries.length, 3);
    const range = await entryDataRange(stripped, 'manifest.json');
    const bad = await copyWithFlip(stripped, range.start + Math.floor(range.length / 2));
    await rejectsWith(readManifest(bad), 'checksum', /manifest\.json.*CRC-32/);
    assert.ok(buf.length > 0);
  });

  it('rejects a truncated archive cleanly at any cut', async () => {
    const buf = await fsp.readFile(archive);
    const cuts = [1, 3, 4, 10, 31, 100, 1000, Math.floor(buf.length / 3), Math.floor(buf.length / 2), buf.length - 200, buf.length - 60, buf.length - 22, buf.length - 1];
    for (const cut of cuts) {
      const f = tmp(`cut-${cut}.avsnap`);
      await fsp.writeFile(f, buf.subarray(0, cut));
      const expected = cut < 4 ? 'not-archive' : 'truncated';
      const e1 = await rejectsWith(readManifest(f), expected);
      assert.ok(e1.message.includes(f), `names the file: ${e1.message}`);
      await rejectsWith(openArchive(f), expected);
      await rejectsWith(unpackArchive(f, tmpDir('cut-out')), expected);
    }
  });

  it('rejects what is not an archive, with the file named', async () => {
    const empty = tmp('empty.avsnap');
    fs.writeFileSync(empty, '');
    await rejectsWith(readManifest(empty), 'not-archive', /empty/);
    const af = fixtures()[0].path;
    await rejectsWith(readManifest(af), 'not-archive', new RegExp(path.basename(af).replace(/[.]/g, '\\.')));
    await rejectsWith(readManifest(tmpRoot), 'not-archive', /folder/);
    await rejectsWith(readManifest(tmp('missing.avsnap')), 'io', /no such file/);

    const noManifest = tmp('nomanifest.zip');
    await writeRawZip(noManifest, [{ name: 'hello.txt', data: Buffer.from('hi') }]);
    await rejectsWith(readManifest(noManifest), 'manifest', /no manifest\.json/);

    const badJson = tmp('badjson.avsnap');
    await writeRawZip(badJson, [{ name: 'manifest.json', data: Buffer.from('{"format": "agent-vault-snapshot",') }]);
    await rejectsWith(readManifest(badJson), 'manifest', /badjson\.avsnap!manifest\.json: invalid JSON/);

    const wrongFormat = tmp('wrongformat.avsnap');
    await writeRawZip(wrongFormat, [{ name: 'manifest.json', data: Buffer.from(JSON.stringify({ format: 'something-else', format_version: 1 })) }]);
    await rejectsWith(readManifest(wrongFormat), 'manifest', /not an Agent Vault snapshot manifest/);

    const schemaBad = tmp('schemabad.avsnap');
    const m = manifestFor([]) as Partial<Manifest>;
    delete m.agents;
    (m as Record<string, unknown>).created_at = 'yesterday';
    await writeRawZip(schemaBad, [{ name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) }]);
    const e = await rejectsWith(readManifest(schemaBad), 'manifest', /"agents"/);
    assert.match(e.message, /created_at/);
  });

  it('rejects a newer format_version with an upgrade message', async () => {
    const f = tmp('newer.avsnap');
    const data = Buffer.from('{}');
    // a future format may look completely different: only format + format_version are read
    await writeRawZip(f, [
      { name: 'agents/a.af', data },
      { name: 'manifest.json', data: Buffer.from(JSON.stringify({ format: 'agent-vault-snapshot', format_version: ARCHIVE_FORMAT_VERSION + 1, stuff: [] })) },
    ]);
    const e = await rejectsWith(readManifest(f), 'format-version');
    assert.equal(e.message, `${f}: written by a newer Agent Vault (format ${ARCHIVE_FORMAT_VERSION + 1}, this reads up to ${ARCHIVE_FORMAT_VERSION}); upgrade Agent Vault`);
    await rejectsWith(openArchive(f), 'format-version', /upgrade Agent Vault/);
    await rejectsWith(unpackArchive(f, tmpDir('newer-out')), 'format-version');
  });

  it('accepts unknown additional manifest fields (minor additive changes)', async () => {
    const f = tmp('additive.avsnap');
    const entries = [{ name: 'agents/a.af', data: Buffer.from('{}') }];
    const m = manifestFor(entries, { some_future_field: { x: 1 } });
    (m.entries[0] as unknown as Record<string, unknown>).future_entry_field = true;
    await writeRawZip(f, [...entries, { name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) }]);
    const got = await readManifest(f);
    assert.deepEqual(got.some_future_field, { x: 1 });
  });

  it('guards against zip-slip, absolute names and duplicate entries', async () => {
    const slip = tmp('slip.avsnap');
    const placeholder = 'xx/evil.af';
    await writeRawArchive(slip, [{ name: placeholder, data: Buffer.from('{}') }]);
    const buf = await fsp.readFile(slip);
    const patched = Buffer.from(buf.toString('latin1').split(placeholder).join('../evil.af'), 'latin1');
    await fsp.writeFile(slip, patched);
    const out = tmpDir('slip-out');
    const e = await rejectsWith(unpackArchive(slip, path.join(out, 'inner'), { raw: true }), 'entry-name', /"\.\.\/evil\.af"/);
    assert.equal(e.location?.entry, '../evil.af');
    assert.deepEqual(fs.readdirSync(out), []);

    const abs = tmp('abs.avsnap');
    await writeRawArchive(abs, [{ name: 'xetc/passwd', data: Buffer.from('x') }]);
    const b2 = await fsp.readFile(abs);
    await fsp.writeFile(abs, Buffer.from(b2.toString('latin1').split('xetc/passwd').join('/etc/passwd'), 'latin1'));
    await rejectsWith(readManifest(abs), 'entry-name', /absolute/);

    const dup = tmp('dup.avsnap');
    await writeRawArchive(dup, [
      { name: 'agents/a.af', data: Buffer.from('{}') },
      { name: 'agents/b.af', data: Buffer.from('{}') },
    ]);
    const b3 = await fsp.readFile(dup);
    await fsp.writeFile(dup, Buffer.from(b3.toString('latin1').split('agents/b.af').join('agents/a.af'), 'latin1'));
    await rejectsWith(openArchive(dup), 'entry-name', /twice/);

    const unlisted = tmp('unlisted.avsnap');
    const m = manifestFor([]);
    await writeRawZip(unlisted, [
      { name: 'extra.bin', data: Buffer.from('x') },
      { name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) },
    ]);
    await rejectsWith(openArchive(unlisted), 'manifest', /extra\.bin.*not listed/);
    // verifyManifestOnly lets a damaged archive be inspected
    const r = await openArchive(unlisted, { verifyManifestOnly: true });
    await r.close();

    const missing = tmp('missing-entry.avsnap');
    const m2 = manifestFor([{ name: 'agents/gone.af', data: Buffer.from('{}') }]);
    await writeRawZip(missing, [{ name: 'manifest.json', data: Buffer.from(JSON.stringify(m2)) }]);
    await rejectsWith(openArchive(missing), 'missing-entry', /agents\/gone\.af/);

    const secret = tmp('secret.avsnap');
    await writeRawArchive(secret, [{ name: 'secrets/env.json', data: Buffer.from('{"K":"v"}') }]);
    await rejectsWith(openArchive(secret), 'plaintext-secret', /secrets\/env\.json.*not encrypted/);
  });

  it('readManifest reads only the manifest, even next to a 200 MB stored entry', async function () {
    this.timeout(120_000);
    const big = tmp('big.avsnap');
    const w = await createArchiveWriter(big);
    const chunk = Buffer.alloc(4 * 1024 * 1024, 7);
    async function* data(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 50; i++) yield chunk;
    }
    const entry = await w.addStream('qdrant/big.snapshot', data(), { compress: false });
    assert.equal(entry.size, 200 * 1024 * 1024);
    await w.addJson('agents/a.af', { agents: [] });
    await w.finish({ agents: [] });
    assert.ok(fs.statSync(big).size > 200 * 1024 * 1024);

    // count every byte read from disk through the fs module yauzl uses
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fsMod = require('fs') as typeof fs & { read: (...a: unknown[]) => void };
    const realRead = fsMod.read;
    let bytesRead = 0;
    fsMod.read = function (this: unknown, ...args: unknown[]) {
      const cb = args[args.length - 1] as (err: Error | null, n: number, b: Buffer) => void;
      args[args.length - 1] = (err: Error | null, n: number, b: Buffer) => {
        bytesRead += n || 0;
        cb(err, n, b);
      };
      return (realRead as (...a: unknown[]) => void).apply(this, args);
    } as typeof fsMod.read;
    let m: Manifest;
    try {
      m = await readManifest(big);
    } finally {
      fsMod.read = realRead;
    }
    assert.ok(bytesRead > 0, 'the spy saw the reads');
    assert.ok(bytesRead < 256 * 1024, `readManifest read ${bytesRead} bytes`);
    assert.deepEqual(
      m.entries.map((e) => e.name),
      ['qdrant/big.snapshot', 'agents/a.af'],
    );
  });
});

describe('snapshot archive: passages and vectors entries', () => {
  it('round-trips passages + vectors through pack/unpack with embeddings at the true dimension', async () => {
    const dest = tmp('passages.avsnap');
    const dim = 12;
    const vecs = rows(20, dim, 7);
    vecs[3][0] = -0;
    vecs[4][1] = 1e-45; // smallest subnormal
    const passages = vecs.map((_, i) => ({ id: `passage-${i}`, text: `memory ${i}`, tags: ['t'], embedding: i === 5 ? null : undefined }));
    const w = await createArchiveWriter(dest);
    const agentDoc = { agents: [{ id: 'agent-x', name: 'x' }], groups: [], blocks: [], files: [], sources: [], tools: [], mcp_servers: [] };
    await w.addJson(agentEntryName('agent-x'), agentDoc);
    await w.addStream(passagesEntryName('agent-x'), Readable.from(passages.map((p) => Buffer.from(JSON.stringify(p) + '\n'))));
    const vw = new VectorWriter({ dim });
    const p = w.addStream(vectorsEntryName('agent-x'), vw.stream);
    for (const v of vecs) await vw.append(v);
    await vw.end();
    await p;
    await w.finish({
      source: { kind: 'pglite' },
      agents: [
        {
          id: 'agent-x',
          name: 'x',
          entry: agentEntryName('agent-x'),
          counts: { messages: 0, in_context_messages: 0, blocks: 0, tools: 0, passages: 20, groups: 0, files: 0 },
          embedding: { model: 'm', dim, endpoint_type: 'openai' },
          passages_entry: passagesEntryName('agent-x'),
          vectors_entry: vectorsEntryName('agent-x'),
        },
      ],
    });
    const out = tmpDir('passages-out');
    const { files } = await unpackArchive(dest, out);
    assert.deepEqual(
      files.map((f) => path.basename(f)),
      ['agent-x.af', 'agent-x.passages.jsonl'],
    );
    const lines: JsonObject[] = [];
    for await (const l of readJsonLines(path.join(out, 'agent-x.passages.jsonl'))) lines.push(l);
    assert.equal(lines.length, 20);
    lines.forEach((l, i) => {
      assert.equal(l.id, `passage-${i}`);
      if (i === 5) return assert.equal(l.embedding, null);
      const got = Float32Array.from(l.embedding as number[]);
      assert.ok(sameBytes(got, vecs[i]), `passage ${i} embedding is bit-exact`);
    });
    assert.ok(Object.is((lines[3].embedding as number[])[0], -0));
  });
});

describe('vector encoding', () => {
  const special = Float32Array.from([0, -0, 1, -1, 1e-45, -1e-45, 1.1754942e-38, 1.17549435e-38, 3.4028235e38, -3.4028235e38, 0.1, 1 / 3, 5e-40]);

  it('writes the documented header', () => {
    const buf = encodeVectors([special], special.length);
    assert.equal(buf.subarray(0, 4).toString('latin1'), 'AVVF');
    assert.equal(buf.readUInt16LE(4), 1);
    assert.equal(buf.readUInt16LE(6), 1);
    assert.equal(buf.readUInt32LE(8), special.length);
    assert.equal(buf.readUInt32LE(12), 0);
    assert.equal(buf.readBigUInt64LE(16), 1n);
    assert.equal(buf.readBigUInt64LE(24), 0n);
    assert.equal(buf.length, VECTOR_HEADER_SIZE + special.length * 4);
    assert.equal(buf.readFloatLE(VECTOR_HEADER_SIZE + 4 * 4), special[4]);
    // little-endian binary32 of 1.0
    assert.deepEqual([...buf.subarray(VECTOR_HEADER_SIZE + 8, VECTOR_HEADER_SIZE + 12)], [0x00, 0x00, 0x80, 0x3f]);
  });

  it('decodes byte-exact, including -0 and subnormals', () => {
    const input = [special, ...rows(5, special.length, 3)];
    const buf = encodeVectors(input, special.length);
    const it = readVectors(buf);
    assert.equal(it.header.count, input.length);
    const out = [...it];
    assert.equal(out.length, input.length);
    out.forEach((v, i) => assert.ok(sameBytes(v, input[i]), `row ${i}`));
    assert.ok(Object.is(out[0][1], -0));
    assert.equal(out[0][4], 1e-45 === Math.fround(1e-45) ? 1e-45 : Math.fround(1e-45));
    // an unaligned buffer still decodes
    const shifted = Buffer.concat([Buffer.alloc(1), buf]).subarray(1);
    assert.ok(sameBytes([...readVectors(shifted)][0], special));
    // number[] input is rounded to float32
    const fromNumbers = [...readVectors(encodeVectors([[0.1, -0, 2]], 3))][0];
    assert.ok(Object.is(fromNumbers[1], -0));
    assert.equal(fromNumbers[0], Math.fround(0.1));
  });

  it('streams: VectorWriter output equals encodeVectors, and reads back in odd-sized chunks', async () => {
    const input = rows(300, 24, 9);
    const vw = new VectorWriter({ dim: 24, count: 300, chunkBytes: 1000 });
    const collected = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of vw.stream) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    })();
    for (const r of input) await vw.append(r);
    await vw.end();
    const bytes = await collected;
    assert.ok(bytes.equals(encodeVectors(input, 24)));
    async function* chunked(b: Buffer, size: number): AsyncGenerator<Buffer> {
      for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
    }
    for (const size of [1, 7, 33, 96, 4096]) {
      const got: Float32Array[] = [];
      for await (const v of readVectorsStream(chunked(bytes, size))) got.push(v);
      assert.equal(got.length, 300);
      got.forEach((v, i) => assert.ok(sameBytes(v, input[i])));
    }
  });

  it('supports an unknown count (derived from the size)', async () => {
    const vw = new VectorWriter({ dim: 4 });
    const collected = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of vw.stream) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    })();
    for (const r of rows(10, 4)) await vw.append(r);
    await vw.end();
    const bytes = await collected;
    assert.equal(bytes.readBigUInt64LE(16), 0xffff_ffff_ffff_ffffn);
    const it = readVectors(bytes);
    assert.equal(it.header.count, 10);
    assert.equal(it.header.countInHeader, false);
    assert.equal([...it].length, 10);
  });

  it('rejects wrong dimensions, wrong counts, bad headers and truncated data', async () => {
    const vw = new VectorWriter({ dim: 4, count: 2 });
    vw.stream.resume();
    await assert.rejects(vw.append([1, 2, 3]), (e: unknown) => e instanceof AgentVaultError && e.code === 'vector-dim');
    await vw.append([1, 2, 3, 4]);
    vw.stream.on('error', () => undefined);
    await assert.rejects(vw.end(), (e: unknown) => e instanceof AgentVaultError && /1 vectors appended but 2/.test(e.message));

    const good = encodeVectors(rows(3, 4), 4);
    const expectCode = (b: Buffer, code: string, re?: RegExp): void =>
      assert.throws(
        () => readVectors(b, 'passages/a.vectors'),
        (e: unknown) => e instanceof AgentVaultError && e.code === code && (!re || re.test(e.message)) && e.message.includes('passages/a.vectors'),
      );
    expectCode(good.subarray(0, 10), 'vector-format', /shorter/);
    expectCode(good.subarray(0, good.length - 3), 'vector-format', /declares 3/);
    const badMagic = Buffer.from(good);
    badMagic[0] = 0x58;
    expectCode(badMagic, 'vector-format', /magic/);
    const newer = Buffer.from(good);
    newer.writeUInt16LE(2, 4);
    expectCode(newer, 'format-version', /newer Agent Vault/);
    const flags = Buffer.from(good);
    flags.writeUInt32LE(1, 12);
    expectCode(flags, 'vector-format', /flags/);

    const partial = (async () => {
      for await (const _ of readVectorsStream([good.subarray(0, good.length - 5)], 'x.vectors')) {
        /* drain */
      }
    })();
    await assert.rejects(partial, (e: unknown) => e instanceof AgentVaultError && e.code === 'vector-format');
  });

  it('pads to 4096 and trims back exactly; refuses to trim non-zero padding', () => {
    const v = rows(1, 1536, 5)[0];
    v[1535] = -0;
    const padded = padTo(v);
    assert.equal(padded.length, LETTA_PADDED_DIM);
    assert.ok(padded.subarray(1536).every((x) => x === 0));
    assert.ok(sameBytes(trimPadding(padded, 1536), v));
    const negZeroPad = Float32Array.from([1, 2, -0, -0]);
    assert.deepEqual([...trimPadding(negZeroPad, 2)], [1, 2]);
    assert.throws(
      () => padTo(new Float32Array(5000)),
      (e: unknown) => e instanceof AgentVaultError && e.code === 'vector-dim',
    );
    const dirty = padTo(v);
    dirty[3000] = 1e-30;
    assert.throws(
      () => trimPadding(dirty, 1536),
      (e: unknown) => e instanceof AgentVaultError && /element 3000/.test(e.message),
    );
    assert.throws(
      () => trimPadding(v, 2000),
      (e: unknown) => e instanceof AgentVaultError && e.code === 'vector-dim',
    );
  });

  it('parses and formats pgvector text literals, round-tripping float32 exactly', () => {
    assert.deepEqual([...parsePgVector('[1,2,3]')], [1, 2, 3]);
    assert.deepEqual([...parsePgVector(' [ 1.5 , -2e-3,+4 ] ')], [1.5, Math.fround(-2e-3), 4]);
    assert.equal(formatPgVector([1, 2, 3]), '[1,2,3]');
    assert.equal(formatFloat32(0.1), '0.1');
    assert.equal(formatFloat32(Math.fround(0.1)), '0.1');
    assert.equal(formatFloat32(-0), '-0');
    assert.equal(formatFloat32(1e-45), '1e-45');
    const input = Float32Array.from([...special, ...rows(1, 500, 11)[0]]);
    const text = formatPgVector(input);
    assert.ok(sameBytes(parsePgVector(text), input));
    for (const bad of ['', '1,2', '[]', '[ ]', '[1,,2]', '[NaN]', '[Infinity]', '[1e39]', '[1;2]', '[0x10]', '[1,2']) {
      assert.throws(
        () => parsePgVector(bad),
        (e: unknown) => e instanceof AgentVaultError && e.code === 'vector-parse',
        `rejects ${JSON.stringify(bad)}`,
      );
    }
    assert.throws(
      () => formatPgVector([NaN]),
      (e: unknown) => e instanceof AgentVaultError,
    );
    assert.throws(
      () => formatPgVector([]),
      (e: unknown) => e instanceof AgentVaultError,
    );
  });
});
