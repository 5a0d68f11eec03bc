/**
 * Reading Letta Agent Files: detect v1 / v2 / double-encoded v2, parse, count.
 * Parsing is JSON.parse (native, linear); positions are only computed when something is wrong.
 */
import { promises as fs } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { AgentVaultError } from '../core/errors';
import { LineIndex, walkJson } from './locate';
import type { AgentFileCounts, AgentFileFormat, AgentFileV1, AgentFileV2 } from './types';
import { upgradeV1ToV2 } from './upgrade';

export interface ParsedAgentFile {
  format: AgentFileFormat;
  doc: AgentFileV1 | AgentFileV2;
  /** The JSON text that positions refer to (the decoded inner document for double-encoded v2). */
  text: string;
  /** v2: metadata.revision_id (the exporting server's alembic revision) */
  revision: string | null;
  /** v1: the Letta package version that wrote it */
  version: string | null;
  counts: AgentFileCounts;
  /** Non-fatal observations made while reading (e.g. a byte-order mark). */
  notes: ReadNote[];
  source?: string;
}

export interface ReadNote {
  code: string;
  message: string;
  line: number;
  column: number;
}

/** Files larger than this are refused before reading (a sanity bound, not a format limit). */
export const MAX_AGENT_FILE_BYTES = 2 * 1024 * 1024 * 1024 - 1;

export async function readAgentFile(path: string): Promise<ParsedAgentFile> {
  let text: string;
  try {
    const st = await fs.stat(path);
    if (st.isDirectory()) throw new AgentVaultError('io', `${path} is a directory, not an agent file`, { kind: 'usage', location: { file: path } });
    if (st.size > MAX_AGENT_FILE_BYTES) {
      throw new AgentVaultError('too-large', `${path} is ${st.size} bytes; agent files over 2 GiB are not supported`, { location: { file: path } });
    }
    // Decoding inside readFile frees the bytes before parsing starts: the buffer is as large as
    // the file and must not stay alive next to the text and the parsed document (peak memory).
    text = await fs.readFile(path, 'utf8');
    // A bad byte decodes to U+FFFD; only then are the bytes read again to find it (a real
    // U+FFFD in the text is legal and passes the exact check).
    if (text.includes('\uFFFD')) text = decodeAgentFileBytes(await fs.readFile(path), path);
  } catch (e) {
    if (e instanceof AgentVaultError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new AgentVaultError('io', `cannot read ${path}: ${why}`, { kind: code === 'ENOENT' ? 'usage' : 'io', location: { file: path } });
  }
  if (text.length === 0) return parseAgentFileBytes(Buffer.alloc(0), path);
  return parseAgentFileText(text, path);
}

export function parseAgentFileBytes(buf: Buffer, source?: string): ParsedAgentFile {
  return parseAgentFileText(decodeAgentFileBytes(buf, source), source);
}

/** UTF-8 text of an agent file, or an AgentVaultError naming the first bad byte. */
export function decodeAgentFileBytes(buf: Buffer, source?: string): string {
  if (buf.length === 0) {
    throw new AgentVaultError('empty', `${source ?? 'input'} is empty (0 bytes): not an agent file`, { location: { file: source, line: 1, column: 1 } });
  }
  if (!isUtf8(buf)) {
    const off = firstInvalidUtf8(buf);
    const before = buf.subarray(0, off).toString('utf8');
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new AgentVaultError(
      'encoding',
      `${source ?? 'input'} is not UTF-8 text (invalid byte 0x${buf[off].toString(16).padStart(2, '0')} at byte ${off}, line ${line}, column ${column}): binary data or another encoding, not an agent file`,
      { location: { file: source, line, column } },
    );
  }
  return buf.toString('utf8');
}

export function parseAgentFileText(input: string, source?: string): ParsedAgentFile {
  const notes: ReadNote[] = [];
  let text = input;
  if (text.charCodeAt(0) === 0xfeff) {
    notes.push({
      code: 'bom',
      message: 'the file starts with a UTF-8 byte-order mark; it was ignored (Letta reads such files, but other JSON tools may not)',
      line: 1,
      column: 1,
    });
    text = text.slice(1);
  }
  if (text.trim() === '') {
    throw new AgentVaultError('empty', `${source ?? 'input'} holds only white space: not an agent file`, { location: { file: source, line: 1, column: 1 } });
  }
  let value: unknown = parseJsonOrThrow(text, source, false);
  let format: AgentFileFormat | undefined;
  if (typeof value === 'string') {
    // Double-encoded v2: the document is a JSON string holding the JSON text.
    text = value;
    value = parseJsonOrThrow(text, source, true);
    if (typeof value === 'string') {
      throw new AgentVaultError('unknown-format', `${source ?? 'input'} is a JSON string inside a JSON string (encoded more than twice); not an agent file`, {
        location: { file: source, pointer: '', line: 1, column: 1 },
      });
    }
    format = 'v2-double-encoded';
  }
  const kind = detectKind(value);
  if (kind === undefined) {
    throw new AgentVaultError('unknown-format', `${source ?? 'input'} is not a Letta agent file: ${describeRoot(value)}`, {
      location: { file: source, pointer: '', line: 1, column: 1 },
      hint: 'an agent file is a JSON object with "agents" (v2) or "core_memory" and "messages" (v1)',
    });
  }
  if (format === 'v2-double-encoded' && kind !== 'v2') {
    format = 'v2-double-encoded';
  }
  format ??= kind;
  const doc = value as AgentFileV1 | AgentFileV2;
  return {
    format,
    doc,
    text,
    revision: kind === 'v2' ? stringOrNull((doc as AgentFileV2).metadata?.revision_id) : null,
    version: kind === 'v1' ? stringOrNull((doc as AgentFileV1).version) : null,
    counts: countAgentFile(doc, kind),
    notes,
    source,
  };
}

function parseJsonOrThrow(text: string, source: string | undefined, inner: boolean): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const problem = walkJson(text);
    const where = inner ? ' (inside the double-encoded document)' : '';
    if (!problem) {
      // JSON.parse failed where the walker did not: report what V8 said.
      throw new AgentVaultError('json-syntax', `${source ?? 'input'}: invalid JSON${where}`, { location: { file: source } });
    }
    const pos = new LineIndex(text).position(problem.offset);
    throw new AgentVaultError('json-syntax', `${source ?? 'input'}:${pos.line}:${pos.column}: invalid JSON${where}: ${problem.message}`, {
      location: { file: source, pointer: problem.pointer, line: pos.line, column: pos.column },
    });
  }
}

function describeRoot(v: unknown): string {
  if (v === null) return 'the document is null';
  if (Array.isArray(v)) return 'the document is an array, expected an object';
  if (typeof v !== 'object') return `the document is a ${typeof v}, expected an object`;
  const keys = Object.keys(v as object);
  return keys.length === 0
    ? 'the document is an empty object'
    : `an object with ${keys
        .slice(0, 5)
        .map((k) => `"${k}"`)
        .join(', ')}${keys.length > 5 ? ', …' : ''} but neither "agents" (v2) nor "core_memory"/"messages" (v1)`;
}

/** 'v2' for an AgentFileSchema document, 'v1' for the legacy single-agent schema. */
export function detectKind(v: unknown): 'v1' | 'v2' | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if ('agents' in o) return 'v2';
  if ('core_memory' in o || 'in_context_message_indices' in o || ('messages' in o && 'agent_type' in o)) return 'v1';
  return undefined;
}

function stringOrNull(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function len(v: unknown): number {
  return Array.isArray(v) ? v.length : 0;
}

export function countAgentFile(doc: AgentFileV1 | AgentFileV2, kind: 'v1' | 'v2'): AgentFileCounts {
  if (kind === 'v1') {
    const d = doc as AgentFileV1;
    return {
      agents: 1,
      blocks: len(d.core_memory),
      tools: len(d.tools),
      messages: len(d.messages),
      groups: d.multi_agent_group ? 1 : 0,
      files: 0,
      sources: 0,
      skills: 0,
      mcp_servers: 0,
    };
  }
  const d = doc as AgentFileV2;
  let messages = 0;
  if (Array.isArray(d.agents)) for (const a of d.agents) messages += a && typeof a === 'object' ? len(a.messages) : 0;
  return {
    agents: len(d.agents),
    blocks: len(d.blocks),
    tools: len(d.tools),
    messages,
    groups: len(d.groups),
    files: len(d.files),
    sources: len(d.sources),
    skills: len(d.skills),
    mcp_servers: len(d.mcp_servers),
  };
}

/** The document as v2 (v1 upgraded by the pure `upgradeV1ToV2`). */
export function toV2(parsed: Pick<ParsedAgentFile, 'format' | 'doc'>): AgentFileV2 {
  return parsed.format === 'v1' ? upgradeV1ToV2(parsed.doc as AgentFileV1) : (parsed.doc as AgentFileV2);
}

function firstInvalidUtf8(buf: Buffer): number {
  // Only called once the native isUtf8 said no; a plain decoder loop finds where.
  let i = 0;
  while (i < buf.length) {
    const b = buf[i];
    const n = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    for (let k = 1; k <= n; k++) {
      if (i + k >= buf.length || (buf[i + k] & 0xc0) !== 0x80) return i;
    }
    i += n + 1;
  }
  return Math.max(0, buf.length - 1);
}
