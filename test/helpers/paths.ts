import path from 'node:path';
import { readFileSync } from 'node:fs';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const SHARED_DIR = path.resolve(REPO_ROOT, '..', 'shared');
export const FIXTURES_DIR = path.join(SHARED_DIR, 'fixtures', 'af');
export const REFERENCE_SCHEMA = path.join(SHARED_DIR, 'reference', 'agentfile-v2.letta-openapi.schema.json');

export interface FixtureInfo {
  file: string;
  path: string;
  /** as the fixtures README states it */
  format: 'v1' | 'v2' | 'v2-double-encoded';
  /** key=value facts from the README's contents column (agents, blocks, tools, messages, core_memory, revision_id, version …) */
  facts: Record<string, string>;
}

/** The fixture table from ../shared/fixtures/af/README.md: the ground truth the tests check against. */
export function fixtures(): FixtureInfo[] {
  const readme = readFileSync(path.join(FIXTURES_DIR, 'README.md'), 'utf8');
  const out: FixtureInfo[] = [];
  for (const line of readme.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 9 || !cells[1].endsWith('.af')) continue;
    const desc = cells[cells.length - 2];
    const format = desc.startsWith('v2 (double-encoded') ? 'v2-double-encoded' : desc.startsWith('v2') ? 'v2' : desc.startsWith('v1') ? 'v1' : undefined;
    if (!format) throw new Error(`cannot read format of ${cells[1]} from the fixtures README: ${desc}`);
    const facts: Record<string, string> = {};
    for (const m of desc.matchAll(/([a-z_]+)=([^;]+)/g)) facts[m[1]] = m[2].trim();
    out.push({ file: cells[1], path: path.join(FIXTURES_DIR, cells[1]), format, facts });
  }
  return out;
}
