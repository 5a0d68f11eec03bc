/**
 * Live agents as a diff side ("drift since the last snapshot"): the agents are exported from the
 * database in one REPEATABLE READ transaction to a temporary snapshot, which is then read like any
 * archive. This reuses the streaming archive reader, so memory stays bounded whatever the size,
 * and the comparison sees exactly what a backup taken now would hold.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from '../db/types';
import { AgentVaultError } from '../core/errors';
import { openPg } from '../db/pg';
import { openPglite } from '../db/pglite';
import { exportAgents, type ExportSelect } from '../letta/export';
import { openArchiveSource, openSource, type AgentStateSource } from './sources';

export interface LiveSourceOptions {
  /** Shown in reports, e.g. "postgres://host:5432/letta" (never a password). */
  label: string;
  /** Only this agent (id or name); default all agents. */
  agent?: string;
  organizationId?: string;
}

/** A snapshot of live agents in a temp folder of its own; `remove()` deletes the folder. */
export interface LiveSnapshot {
  path: string;
  /** The temp folder that holds it (nothing else is in it). */
  dir: string;
  remove(): Promise<void>;
}

/**
 * Exports live agents, in one REPEATABLE READ transaction, to a temporary snapshot: exactly what a
 * backup taken now would hold. The one way every front end (CLI diff, the extension's "Diff with
 * Live Agent") reads live state as a diff side.
 */
export async function exportLiveSnapshot(db: Db, opts: { select: ExportSelect; organizationId?: string; onProgress?: () => void }): Promise<LiveSnapshot> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-vault-live-'));
  const remove = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const out = path.join(dir, 'live.avsnap');
    await exportAgents(db, { select: opts.select, organizationId: opts.organizationId, out, onProgress: opts.onProgress ? () => opts.onProgress!() : undefined });
    return { path: out, dir, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}

export async function openDatabaseSource(db: Db, opts: LiveSourceOptions): Promise<AgentStateSource> {
  const live = await exportLiveSnapshot(db, { select: opts.agent ? { refs: [opts.agent] } : { all: true }, organizationId: opts.organizationId });
  try {
    const inner = await openArchiveSource(live.path);
    return wrapSource(inner, { kind: 'live', label: opts.label }, async () => {
      await inner.close();
      await live.remove();
    });
  } catch (e) {
    await live.remove();
    throw e;
  }
}

/** A diff side given on the command line: `postgres://…` / `postgresql://…`, `pglite:<dir>`, or a file. */
export function isDatabaseSpec(spec: string): boolean {
  return /^postgres(ql)?:\/\//.test(spec) || spec.startsWith('pglite:');
}

/** Redacts the password of a postgres URL for display. */
export function displayUrl(spec: string): string {
  try {
    const u = new URL(spec);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return spec.replace(/:[^:@/]*@/, ':***@');
  }
}

export async function openSideSpec(spec: string, opts: { agent?: string; schema?: string; organizationId?: string; env?: NodeJS.ProcessEnv } = {}): Promise<AgentStateSource> {
  if (!isDatabaseSpec(spec)) return openSource(spec);
  let db: Db;
  try {
    db = spec.startsWith('pglite:') ? await openPglite({ dataDir: spec.slice('pglite:'.length), schema: opts.schema }) : await openPg({ url: spec, schema: opts.schema, env: opts.env });
  } catch (e) {
    // A database that cannot be reached is a usage error for the diff (kind 'usage').
    if (e instanceof AgentVaultError) throw new AgentVaultError(e.code, e.message, { kind: 'usage', hint: e.hint, location: e.location, cause: e });
    throw e;
  }
  try {
    const src = await openDatabaseSource(db, { label: displayUrl(spec), agent: opts.agent, organizationId: opts.organizationId });
    return wrapSource(src, {}, async () => {
      await src.close();
      await db.close();
    });
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e;
  }
}

/** The same source under another kind/label, with its own close. */
function wrapSource(inner: AgentStateSource, over: Partial<Pick<AgentStateSource, 'kind' | 'label'>>, close: () => Promise<void>): AgentStateSource {
  return {
    kind: over.kind ?? inner.kind,
    label: over.label ?? inner.label,
    format: over.kind === 'live' ? 'live' : inner.format,
    listAgents: () => inner.listAgents(),
    loadAgent: (id) => inner.loadAgent(id),
    iterateMessages: inner.iterateMessages ? (id) => inner.iterateMessages!(id) : undefined,
    iteratePassages: inner.iteratePassages ? (id) => inner.iteratePassages!(id) : undefined,
    close,
  };
}
