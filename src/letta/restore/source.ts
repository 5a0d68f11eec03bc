/**
 * The source of a restore: a snapshot archive (checksums verified before any transaction, agent
 * files kept without their messages, messages streamed later) or a plain agent file (held whole).
 * Builds the SourceModel (./model.ts) the plan and the writers read.
 */
import { AgentVaultError, errorMessage } from '../../core/errors';
import { readAgentFile, toV2, parseAgentFileBytes } from '../../format/af';
import { AgentFileSplitter } from '../../format/af-stream';
import { openArchive, type ArchiveReader } from '../../format/archive';
import { noKeyError, type DecryptOptions } from '../../format/crypto';
import type { EntrySource } from '../../format/entry-stream';
import type { AgentFileV2, AgentV2 } from '../../format/types';
import { mergeAgentFiles } from '../../format/pack';
import { checkV2References } from '../../format/validate';
import { isArchivePath } from '../../format/validate-any';
import { AV_EXT } from '../ext';
import { checkMessage, newMessageStats, type MessageStats } from '../tables/messages';
import { isObj, restoreInvalid, strs, type Obj } from '../tables/common';
import type { RawMessages, SourceModel, SrcAgent, SrcObject } from './model';
import type { RestoreSource } from './types';

const MESSAGE_BATCH = 1000;

function hasKey(d: DecryptOptions | undefined): d is DecryptOptions {
  return !!d && (d.passphrase !== undefined || d.key !== undefined);
}

export interface OpenSourceOptions {
  /**
   * The caller reads the agents' passages entries only inside one transaction that any failure
   * rolls back (a restore that writes, not a dry run): a source whose streams check an entry
   * completely on its first read (EntrySource.checksOnRead: a snapshot of the vault's store) has
   * those entries checked as they are written instead of in a pass of their own before.
   */
  checkPassagesOnWrite?: boolean;
}

export async function openSource(src: RestoreSource, decrypt: DecryptOptions | undefined, opts: OpenSourceOptions = {}): Promise<SourceModel> {
  if (typeof src !== 'string' && 'open' in src) {
    const reader = await src.open();
    return archiveModel(reader, reader.path, opts);
  }
  if (typeof src !== 'string') {
    const parsed = { format: ('agents' in src.doc ? 'v2' : 'v1') as 'v1' | 'v2', doc: src.doc };
    const doc = toV2(parsed);
    return inMemoryModel(doc, { path: null, format: parsed.format, name: src.name ?? 'agent file' });
  }
  if (await isArchivePath(src)) return openArchiveSource(src, decrypt);
  const parsed = await readAgentFile(src);
  const doc = toV2(parsed);
  return inMemoryModel(doc, { path: src, format: parsed.format, name: src });
}

/** A plain agent file, held whole (it is small: Letta's export keeps 50 messages). */
function inMemoryModel(doc: AgentFileV2, info: { path: string | null; format: string; name: string }): SourceModel {
  const agentsOf = (): AgentV2[] => (Array.isArray(doc.agents) ? doc.agents : []);
  const serialised = (a: AgentV2): RawMessages[] => {
    const msgs: unknown[] = Array.isArray(a.messages) ? a.messages : [];
    const out: RawMessages[] = [];
    for (let i = 0; i < msgs.length; i += MESSAGE_BATCH) {
      const batch: RawMessages = { length: 0, bufs: [], starts: [], ends: [] };
      for (const m of msgs.slice(i, i + MESSAGE_BATCH)) {
        const b = Buffer.from(JSON.stringify(m ?? null), 'utf8');
        batch.bufs.push(b);
        batch.starts.push(0);
        batch.ends.push(b.length);
        batch.length++;
      }
      out.push(batch);
    }
    return out;
  };
  const stats = agentsOf().map((a, ai) => {
    const st = newMessageStats();
    if (!isObj(a)) return st;
    if (a.messages !== undefined && a.messages !== null && !Array.isArray(a.messages)) throw restoreInvalid(info.name, `agent "${a.id}": "messages" must be an array`, `/agents/${ai}/messages`);
    for (const batch of serialised(a)) for (let k = 0; k < batch.length; k++) checkMessage(batch.bufs[k], batch.starts[k], batch.ends[k], st, info.name, String(a.id));
    return st;
  });
  return buildModel([doc], [stats], {
    path: info.path,
    kind: 'agent-file',
    format: info.format,
    revision: revisionOf(doc),
    sourceKind: 'agent-file',
    reader: null,
    streams: null,
    name: info.name,
    messages: async function* (a) {
      yield* serialised(agentsOf()[a.slot]);
    },
  });
}

/**
 * An archive: one pass over every entry before anything else — each entry against its size,
 * CRC-32 and sha256 (a damaged archive is refused, kind 'failed', before any transaction opens), and
 * for agent files the document without its messages plus a check of every message (ids, roles,
 * references). The messages are streamed again when they are written; no agent file is held whole.
 */
async function openArchiveSource(file: string, decrypt: DecryptOptions | undefined): Promise<SourceModel> {
  return archiveModel(await openArchive(file, { decrypt: hasKey(decrypt) ? decrypt : undefined }), file);
}

/**
 * The model of an opened archive reader (a zip archive, or a snapshot of the vault's store read in
 * place); `file` names it in messages. The model owns the reader: closing the model (or a failure
 * here) closes it.
 */
async function archiveModel(reader: ArchiveReader, file: string, opts: OpenSourceOptions = {}): Promise<SourceModel> {
  try {
    if (reader.encrypted && !reader.decryptable) throw noKeyError(file);
    const raw = reader.entryStreams();
    const m = reader.manifest;
    const bad: Array<{ entry: string; error: string }> = [];
    let invalidDoc: unknown = null;
    const docs: AgentFileV2[] = [];
    const stats: MessageStats[][] = [];
    const agentEntries = new Set(m.agents.map((a) => a.entry));
    // passages entries checked as the transaction reads them (see OpenSourceOptions)
    const onWrite = new Set<string>();
    if (opts.checkPassagesOnWrite && raw.checksOnRead) {
      for (const a of m.agents) for (const x of [a.passages_entry, a.vectors_entry]) if (typeof x === 'string' && x) onWrite.add(x);
    }
    const streams = onWrite.size ? checkedOnWrite(raw, onWrite, file) : raw;
    // the other entries (vectors, mostly) are checked (on a worker thread when they are large) while the agent files are read here
    const others = m.entries.filter((e) => !agentEntries.has(e.name) && !onWrite.has(e.name));
    const othersChecked = streams.checkEntries(others.map((e) => e.name));
    othersChecked.catch(() => undefined);
    for (const a of m.agents) {
      const where = `${file}!${a.entry}`;
      const splitter = new AgentFileSplitter(where);
      const st: MessageStats[] = [];
      let failed: unknown = null;
      try {
        for await (const chunk of streams.stream(a.entry, { verify: 'sha256' })) {
          if (failed) continue; // keep reading: a damaged entry is reported as such
          try {
            splitter.push(chunk);
            const got = splitter.take();
            for (let k = 0; k < got.length; k++) {
              const ai = got.agents[k];
              checkMessage(got.bufs[k], got.starts[k], got.ends[k], (st[ai] ??= newMessageStats()), where, `agents[${ai}]`);
            }
          } catch (e) {
            failed = e;
          }
        }
      } catch (e) {
        bad.push({ entry: a.entry, error: errorMessage(e) });
        continue;
      }
      if (!failed) {
        try {
          const parsed = parseAgentFileBytes(splitter.end(), where);
          if (parsed.format !== 'v2') throw restoreInvalid(where, `archive agent entries must be plain .af v2, this one is ${parsed.format}`);
          docs.push(parsed.doc as AgentFileV2);
          stats.push(st);
          continue;
        } catch (e) {
          failed = e;
        }
      }
      invalidDoc ??= failed;
    }
    bad.push(...(await othersChecked));
    if (bad.length) {
      throw new AgentVaultError('checksum', `${file}: ${bad.length === 1 ? 'an entry is' : `${bad.length} entries are`} damaged; nothing was restored. ${bad.map((b) => b.error).join('; ')}`, {
        location: { file, entry: bad[0].entry },
        kind: 'failed',
        hint: 'use another copy of the archive',
      });
    }
    if (invalidDoc) throw invalidDoc;
    // secret values (only encrypted archives have secrets/ entries)
    const secrets = new Map<string, Map<string, Obj>>();
    for (const e of m.entries) {
      if (!e.name.startsWith('secrets/')) continue;
      const chunks: Buffer[] = [];
      for await (const c of streams.stream(e.name)) chunks.push(c);
      let v: unknown;
      try {
        v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        throw restoreInvalid(`${file}!${e.name}`, `invalid JSON: ${errorMessage(err)}`);
      }
      if (!isObj(v) || typeof v.agent_id !== 'string' || !Array.isArray(v.variables)) throw restoreInvalid(`${file}!${e.name}`, 'not a secrets entry ({ agent_id, variables: [...] })');
      const vars = new Map<string, Obj>();
      for (const x of v.variables) if (isObj(x) && typeof x.key === 'string' && typeof x.value === 'string') vars.set(x.key, x);
      secrets.set(v.agent_id, vars);
    }
    const model = buildModel(docs, stats, {
      path: file,
      kind: 'archive',
      format: m.source?.file_format ?? 'v2',
      revision: m.source?.letta_revision ?? revisionOf(docs[0]),
      sourceKind: m.source?.kind ?? null,
      reader,
      streams,
      name: file,
      messages: async function* (a) {
        const entry = m.agents[a.doc].entry;
        const where = `${file}!${entry}`;
        const splitter = new AgentFileSplitter(where, a.slot);
        for await (const chunk of streams.stream(entry)) {
          splitter.push(chunk);
          const got = splitter.take();
          if (got.length) yield got;
        }
        splitter.end();
        if (splitter.messageCounts[a.slot] !== a.messageCount)
          throw restoreInvalid(where, `agent "${a.fileId}" has ${splitter.messageCounts[a.slot]} messages now, ${a.messageCount} when it was checked`);
      },
    });
    model.encrypted = reader.encrypted;
    model.secrets = secrets;
    model.agents.forEach((a) => {
      a.manifest = m.agents[a.doc] ?? null;
      a.passages = a.manifest?.passages_entry ? (a.manifest.counts?.passages ?? 0) : 0;
    });
    return model;
  } catch (e) {
    await reader.close();
    throw e;
  }
}

/**
 * The streams of a source whose `names` entries are checked only as they are read, inside the
 * restore's one transaction: a damaged or missing chunk there fails the restore, which rolls the
 * transaction back, and the error says so (kind 'failed', exit code 1, as a damage found before
 * the transaction). Errors of the file system or the connection pass unchanged.
 */
function checkedOnWrite(src: EntrySource, names: Set<string>, file: string): EntrySource {
  const wrap = (name: string, e: unknown): unknown => {
    if (!(e instanceof AgentVaultError) || e.kind === 'io' || e.code === 'closed' || !['checksum', 'missing-blob', 'decrypt', 'store-format'].includes(e.code)) return e;
    return new AgentVaultError(e.code, `${file}: an entry is damaged; nothing was restored (the restore's transaction was rolled back). ${errorMessage(e)}`, {
      location: { file, entry: name },
      kind: 'failed',
      cause: e,
      hint: e.hint ?? 'use another copy of the snapshot',
    });
  };
  return {
    file: src.file,
    checksOnRead: src.checksOnRead,
    checkEntries: (n) => src.checkEntries(n),
    close: () => src.close(),
    stream: (name, o) => {
      if (!names.has(name)) return src.stream(name, o);
      const it = src.stream(name, o);
      return (async function* () {
        try {
          yield* it;
        } catch (e) {
          throw wrap(name, e);
        }
      })();
    },
    chunks: async (name) => {
      if (!names.has(name)) return src.chunks(name);
      let r;
      try {
        r = await src.chunks(name);
      } catch (e) {
        throw wrap(name, e);
      }
      const cr = r;
      return {
        next: async () => {
          try {
            return await cr.next();
          } catch (e) {
            throw wrap(name, e);
          }
        },
        close: () => cr.close(),
      };
    },
  };
}

function revisionOf(doc: AgentFileV2 | undefined): string | null {
  const r = doc?.metadata?.revision_id;
  return typeof r === 'string' && r ? r : null;
}

/**
 * The reference checks of `agent-vault validate` (src/format/validate.ts): a dangling reference is
 * invalid input (kind 'failed') before anything is planned. An archive's entries are checked
 * together, as `verify` and `drill` do (an entry may name the other members of a group). Message
 * references are left to the restore's own checks: an archive's documents are read without their
 * messages.
 */
function checkReferences(docs: AgentFileV2[], name: string): void {
  if (!docs.length || !docs.every((d) => isObj(d) && Array.isArray(d.agents))) return; // reported below, with its pointer
  let merged: AgentFileV2;
  try {
    merged = docs.length === 1 ? docs[0] : mergeAgentFiles(docs);
  } catch (e) {
    throw restoreInvalid(name, `the agent files cannot be read together: ${errorMessage(e)}`);
  }
  const bad = checkV2References(merged).filter((f) => f.severity === 'error' && f.code === 'dangling-reference' && !/\/(messages|in_context_message_ids)(\/|$)/.test(f.pointer ?? ''));
  if (bad.length) {
    throw restoreInvalid(
      name,
      `${bad.length} dangling reference${bad.length === 1 ? '' : 's'} (as agent-vault validate reports): ${bad
        .slice(0, 3)
        .map((f) => `${f.message}${f.pointer ? ` (at ${f.pointer})` : ''}`)
        .join('; ')}${bad.length > 3 ? `; and ${bad.length - 3} more` : ''}; nothing was restored`,
      bad[0].pointer,
    );
  }
}

/** The source model from the documents (without messages, or with them for a plain file) and the checks of their messages. */
function buildModel(
  docs: AgentFileV2[],
  stats: MessageStats[][],
  info: Pick<SourceModel, 'path' | 'kind' | 'format' | 'revision' | 'sourceKind' | 'reader' | 'streams'> & {
    name: string;
    messages: (a: SrcAgent) => AsyncGenerator<RawMessages>;
  },
): SourceModel {
  const model: SourceModel = {
    path: info.path,
    kind: info.kind,
    format: info.format,
    revision: info.revision,
    sourceKind: info.sourceKind,
    reader: info.reader,
    streams: info.streams,
    encrypted: false,
    secrets: new Map(),
    agents: [],
    blocks: new Map(),
    tools: new Map(),
    sources: new Map(),
    files: new Map(),
    groups: new Map(),
    mcp: new Map(),
    skills: [],
    dbIds: new Map(),
    rows: new Map(),
    messages: info.messages,
    close: async () => {
      await info.reader?.close();
    },
  };
  checkReferences(docs, info.name);
  docs.forEach((doc, di) => {
    const where = info.reader ? `${info.name}!${info.reader.manifest.agents[di]?.entry}` : info.name;
    if (!isObj(doc) || !Array.isArray(doc.agents)) throw restoreInvalid(where, 'not an agent file v2 (no "agents" list)', '/agents');
    const ext = isObj((doc as Obj)[AV_EXT]) ? ((doc as Obj)[AV_EXT] as Obj) : {};
    const ids: Obj = isObj(ext.ids) ? ext.ids : {};
    const rows: Obj = isObj(ext.rows) ? ext.rows : {};
    for (const [f, d] of Object.entries(ids)) if (typeof d === 'string' && !model.dbIds.has(f)) model.dbIds.set(f, d);
    for (const [f, r] of Object.entries(rows)) if (isObj(r) && !model.rows.has(f)) model.rows.set(f, r);
    const add = (map: Map<string, SrcObject>, key: string, list: unknown) => {
      if (list === undefined || list === null) return;
      if (!Array.isArray(list)) throw restoreInvalid(where, `"${key}" must be an array`, `/${key}`);
      list.forEach((o, i) => {
        if (!isObj(o) || typeof o.id !== 'string') throw restoreInvalid(where, `${key}[${i}] has no string "id"`, `/${key}/${i}`);
        if (!map.has(o.id)) map.set(o.id, { fileId: o.id, dbId: typeof ids[o.id] === 'string' ? ids[o.id] : null, obj: o, extra: isObj(rows[o.id]) ? rows[o.id] : {} });
      });
    };
    add(model.blocks, 'blocks', doc.blocks);
    add(model.tools, 'tools', doc.tools);
    add(model.sources, 'sources', doc.sources);
    add(model.files, 'files', doc.files);
    add(model.groups, 'groups', doc.groups);
    // groups whose members span several entries of an archive (docs/FORMAT.md, agent_vault.groups)
    add(model.groups, `${AV_EXT}.groups`, ext.groups);
    add(model.mcp, 'mcp_servers', doc.mcp_servers);
    for (const [k, sk] of (Array.isArray(doc.skills) ? doc.skills : []).entries()) {
      const label = isObj(sk) ? (typeof sk.name === 'string' ? sk.name : typeof sk.id === 'string' ? sk.id : `skills[${k}]`) : `skills[${k}]`;
      if (!model.skills.includes(label)) model.skills.push(label);
    }
    doc.agents.forEach((a: AgentV2, ai: number) => {
      const p = `/agents/${ai}`;
      if (!isObj(a) || typeof a.id !== 'string') throw restoreInvalid(where, `agents[${ai}] has no string "id"`, `${p}/id`);
      if (model.agents.some((x) => x.fileId === a.id)) throw restoreInvalid(where, `agent id "${a.id}" occurs twice`, `${p}/id`);
      const st = stats[di]?.[ai] ?? newMessageStats();
      const inContext = strs(a.in_context_message_ids);
      inContext.forEach((id, k) => {
        if (!st.ids.has(id))
          throw restoreInvalid(where, `agent "${a.id}": in_context_message_ids[${k}] names message "${id}", which is not one of the agent's messages`, `${p}/in_context_message_ids/${k}`);
      });
      const approvalRefs = new Set([...st.approvalRefs].filter((r) => st.ids.has(r)));
      st.ids.clear(); // only needed for the checks above
      const { messages: _m, ...rest } = a as Obj;
      model.agents.push({
        fileId: a.id,
        dbId: typeof ids[a.id] === 'string' ? ids[a.id] : null,
        obj: rest,
        extra: isObj(rows[a.id]) ? rows[a.id] : {},
        name: typeof a.name === 'string' ? a.name : null,
        doc: di,
        slot: ai,
        manifest: null,
        messageCount: st.count,
        inContext,
        refs: new Set([...inContext, ...approvalRefs]),
        approvalRefs,
        archive: isObj(ext.archive) ? ext.archive : null,
        environment: Array.isArray(ext.environment) ? ext.environment.filter(isObj) : [],
        identities: Array.isArray(ext.identities) ? ext.identities.filter(isObj) : [],
        passages: 0,
      });
    });
  });
  if (model.agents.length === 0) throw restoreInvalid(info.name, 'contains no agents');
  // references every write needs
  for (const a of model.agents) {
    const where = `${info.name} (agent "${a.fileId}")`;
    for (const b of strs(a.obj.block_ids)) if (!model.blocks.has(b)) throw restoreInvalid(where, `block_ids names block "${b}", which is not in the file`);
    for (const t of strs(a.obj.tool_ids)) if (!model.tools.has(t)) throw restoreInvalid(where, `tool_ids names tool "${t}", which is not in the file`);
    for (const s of [...strs(a.obj.source_ids), ...strs(a.obj.folder_ids)]) if (!model.sources.has(s)) throw restoreInvalid(where, `source_ids names source "${s}", which is not in the file`);
    for (const fa of Array.isArray(a.obj.files_agents) ? a.obj.files_agents : []) {
      if (!isObj(fa) || !model.files.has(fa.file_id) || !model.sources.has(fa.source_id))
        throw restoreInvalid(where, `files_agents names file "${fa?.file_id}" / source "${fa?.source_id}", which are not in the file`);
    }
    const labels = new Set<string>();
    for (const b of strs(a.obj.block_ids)) {
      const label = model.blocks.get(b)!.obj.label;
      if (labels.has(label)) throw restoreInvalid(where, `two of its blocks have the label "${label}" (Letta allows one block per label per agent)`);
      labels.add(label);
    }
  }
  for (const f of model.files.values()) if (!model.sources.has(f.obj.source_id)) throw restoreInvalid(info.name, `file "${f.fileId}" names source "${f.obj.source_id}", which is not in the file`);
  return model;
}
