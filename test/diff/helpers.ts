/** Test helpers for the diff: temp files, and snapshot archives with passages and vectors. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createArchiveWriter, agentEntryName, passagesEntryName, vectorsEntryName, type ManifestAgent } from '../../src/format/archive';
import { splitAgentFile } from '../../src/format/pack';
import { encodeVectors } from '../../src/format/vectors';
import { readAgentFile, toV2 } from '../../src/format/af';
import type { AgentFileV2 } from '../../src/format/types';
import { FIXTURES_DIR } from '../helpers/paths';

export const fixture = (name: string): string => path.join(FIXTURES_DIR, `${name}.af`);

export async function fixtureV2(name: string): Promise<AgentFileV2> {
  return structuredClone(toV2(await readAgentFile(fixture(name))));
}

export class TempDir {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'av-diff-'));
  private n = 0;
  file(name: string): string {
    return path.join(this.dir, `${this.n++}-${name}`);
  }
  writeAf(doc: unknown, name = 'agent.af'): string {
    const p = this.file(name);
    writeFileSync(p, JSON.stringify(doc, null, 2));
    return p;
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface TestPassage {
  passage: Record<string, unknown>;
  embedding: number[] | null;
}

/**
 * A snapshot archive of `doc` (one .af v2 entry per agent, as `pack` writes them) plus, per
 * agent id, passages (`passages/<id>.jsonl`) and their vectors (`passages/<id>.vectors`).
 */
export async function writeSnapshot(dest: string, doc: AgentFileV2, passages: Record<string, TestPassage[]> = {}, dim = 8): Promise<string> {
  const w = await createArchiveWriter(dest, { overwrite: true });
  const agents: ManifestAgent[] = [];
  for (const s of splitAgentFile(doc)) {
    const a = s.agent;
    const entry = agentEntryName(a.id);
    await w.addJson(entry, s.doc);
    const ps = passages[a.id];
    let passagesEntry: string | null = null;
    let vectorsEntry: string | null = null;
    if (ps) {
      passagesEntry = passagesEntryName(a.id);
      vectorsEntry = vectorsEntryName(a.id);
      const lines = ps.map((p) => JSON.stringify(p.embedding === null ? { ...p.passage, embedding: null } : p.passage)).join('\n') + (ps.length ? '\n' : '');
      await w.addBuffer(passagesEntry, Buffer.from(lines, 'utf8'));
      await w.addBuffer(
        vectorsEntry,
        encodeVectors(
          ps.map((p) => p.embedding ?? new Array<number>(dim).fill(0)),
          dim,
        ),
      );
    }
    const emb = a.embedding_config as { embedding_model?: string; embedding_dim?: number } | null | undefined;
    agents.push({
      id: a.id,
      name: typeof a.name === 'string' ? a.name : null,
      agent_type: typeof a.agent_type === 'string' ? a.agent_type : null,
      entry,
      counts: { ...s.counts, passages: ps?.length ?? 0 },
      embedding: emb ? { model: emb.embedding_model ?? null, dim: emb.embedding_dim ?? null } : null,
      llm: null,
      passages_entry: passagesEntry,
      vectors_entry: vectorsEntry,
    });
  }
  await w.finish({ created_at: '2026-01-01T00:00:00.000Z', agents });
  return dest;
}

/** Deterministic pseudo-random passages for an agent. */
export function makePassages(n: number, dim = 8, seed = 1): TestPassage[] {
  let x = seed;
  const rnd = (): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
  return Array.from({ length: n }, (_, i) => ({
    passage: { id: `passage-${i}`, text: `fact number ${i}: ${rnd().toString(36).slice(2)}`, tags: ['t'], metadata: {}, created_at: '2026-01-01T00:00:00Z' },
    embedding: Array.from({ length: dim }, () => Math.fround(rnd() - 0.5)),
  }));
}
