/** What an agent file or archive holds, for `agent-vault inspect` and the extension. */
import { AgentVaultError } from '../core/errors';
import { readAgentFile, toV2 } from './af';
import { openArchive, type ArchiveReader, type Manifest } from './archive';
import { KEY_OPTIONS_HINT, type DecryptOptions } from './crypto';
import { isArchivePath } from './validate-any';
import type { AgentFileCounts, AgentFileV2 } from './types';

export interface AgentSummary {
  id: string;
  name: string | null;
  agent_type: string | null;
  llm_model: string | null;
  embedding_model: string | null;
  embedding_dim: number | null;
  messages: number;
  in_context_messages: number;
  blocks: number;
  tools: number;
}

export interface FileDescription {
  file: string;
  kind: 'agent-file' | 'archive';
  format: string;
  revision: string | null;
  version: string | null;
  counts?: AgentFileCounts;
  agents: AgentSummary[];
  manifest?: Manifest;
  /** archives: whether the entries are encrypted, and whether the key given opened it (manifest authenticated) */
  encrypted?: boolean;
  authenticated?: boolean;
  text: string;
}

export interface DescribeOptions {
  /**
   * Passphrase or key of an encrypted archive: checked (a wrong one is error 'wrong-key') and the
   * manifest authenticated. Without it an encrypted archive is still described from its manifest.
   */
  decrypt?: DecryptOptions;
}

const s = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const n = (v: unknown): number | null => (typeof v === 'number' ? v : null);
const len = (v: unknown): number => (Array.isArray(v) ? v.length : 0);

export function summarizeAgents(doc: AgentFileV2, file?: string): AgentSummary[] {
  return (Array.isArray(doc.agents) ? doc.agents : []).map((a, i) => {
    if (!a || typeof a !== 'object' || Array.isArray(a)) {
      // invalid input, reported as such (kind 'failed'), never as an internal error
      throw new AgentVaultError('invalid-agent-file', `${file ?? 'agent file'}: /agents/${i} is ${a === null ? 'null' : Array.isArray(a) ? 'an array' : typeof a}, not an agent object`, {
        location: { file, pointer: `/agents/${i}` },
        kind: 'failed',
        hint: 'agent-vault validate lists every problem of the file',
      });
    }
    return {
      id: String(a.id),
      name: s(a.name),
      agent_type: s(a.agent_type),
      llm_model: s(a.llm_config?.model),
      embedding_model: s(a.embedding_config?.embedding_model),
      embedding_dim: n(a.embedding_config?.embedding_dim),
      messages: len(a.messages),
      in_context_messages: len(a.in_context_message_ids),
      blocks: len(a.block_ids),
      tools: len(a.tool_ids),
    };
  });
}

export async function describeFile(file: string, opts: DescribeOptions = {}): Promise<FileDescription> {
  if (await isArchivePath(file)) {
    const hasKey = !!opts.decrypt && (opts.decrypt.passphrase !== undefined || opts.decrypt.key !== undefined);
    const reader = await openArchive(file, { decrypt: hasKey ? opts.decrypt : undefined });
    await reader.close();
    return describeArchive(reader);
  }
  const parsed = await readAgentFile(file);
  const agents = summarizeAgents(toV2(parsed), file);
  const c = parsed.counts;
  let text = `${file}: Letta agent file, ${parsed.format}`;
  if (parsed.revision) text += `, revision ${parsed.revision}`;
  if (parsed.version) text += `, written by Letta ${parsed.version}`;
  text += `\n  ${c.agents} agent(s), ${c.blocks} block(s), ${c.tools} tool(s), ${c.messages} message(s), ${c.groups} group(s), ${c.files} file(s), ${c.sources} source(s), ${c.skills} skill(s), ${c.mcp_servers} MCP server(s)\n`;
  text += renderAgents(agents);
  return { file, kind: 'agent-file', format: parsed.format, revision: parsed.revision, version: parsed.version, counts: c, agents, text };
}

/**
 * What an opened archive reader holds, from its manifest (`file` is the reader's path): a
 * snapshot archive, or a snapshot of the vault's store read in place (`container` says so).
 */
export function describeArchive(reader: ArchiveReader, opts: { container?: string } = {}): FileDescription {
  const file = reader.path;
  const m = reader.manifest;
  const encrypted = reader.encrypted;
  const authenticated = encrypted && reader.decryptable;
  const agents: AgentSummary[] = m.agents.map((a) => ({
    id: a.id,
    name: a.name,
    agent_type: a.agent_type ?? null,
    llm_model: a.llm?.model ?? null,
    embedding_model: a.embedding?.model ?? null,
    embedding_dim: a.embedding?.dim ?? null,
    messages: a.counts.messages,
    in_context_messages: a.counts.in_context_messages,
    blocks: a.counts.blocks,
    tools: a.counts.tools,
  }));
  let text = `${file}: ${opts.container ?? 'Agent Vault snapshot archive'}, format ${m.format_version}, written ${m.created_at} by agent-vault ${m.tool.version}\n`;
  if (m.source)
    text += `  source: ${m.source.kind}${m.source.letta_revision ? `, Letta revision ${m.source.letta_revision}` : ''}${m.source.pgvector_version ? `, pgvector ${m.source.pgvector_version}` : ''}\n`;
  if (encrypted) {
    text += authenticated
      ? `  encrypted (${String((m.encryption as { scheme?: unknown }).scheme)}); the key opens it and the manifest authenticates\n`
      : `  encrypted (${String((m.encryption as { scheme?: unknown }).scheme)}); the manifest below is not authenticated — to check it and read the entries, ${KEY_OPTIONS_HINT}\n`;
  }
  text +=
    `  ${m.entries.length} entries\n` +
    renderAgents(
      agents,
      m.agents.map((a) => a.counts.passages),
    );
  if (m.qdrant?.collections?.length) text += `  qdrant collections: ${m.qdrant.collections.map((c) => String((c as { name?: unknown }).name)).join(', ')}\n`;
  return { file, kind: 'archive', format: `archive v${m.format_version}`, revision: m.source?.letta_revision ?? null, version: null, agents, manifest: m, encrypted, authenticated, text };
}

function renderAgents(agents: AgentSummary[], passages?: number[]): string {
  return agents
    .map(
      (a, i) =>
        `  agent ${a.id} "${a.name ?? ''}" (${a.agent_type ?? 'unknown type'}): ${a.messages} messages (${a.in_context_messages} in context), ${a.blocks} blocks, ${a.tools} tools` +
        (passages ? `, ${passages[i]} passages` : '') +
        `; llm ${a.llm_model ?? '-'}, embedding ${a.embedding_model ?? '-'}${a.embedding_dim ? `/${a.embedding_dim}` : ''}\n`,
    )
    .join('');
}
