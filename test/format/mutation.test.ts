/**
 * Randomized mutation test: thousands of seeded mutations of the real fixtures (structural edits
 * of the parsed document and byte-level edits of the text). The validator must never throw and
 * every finding must carry a code, a message, a pointer and a position.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentVaultError } from '../../src/core/errors';
import type { Db } from '../../src/db/types';
import { diffPaths } from '../../src/diff/index';
import { describeFile } from '../../src/format/inspect';
import { validateAgentFileText } from '../../src/format/validate';
import { planRestore } from '../../src/letta/restore';
import { freshLettaDb } from '../helpers/letta-db';
import { FIXTURES_DIR, fixtures } from '../helpers/paths';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.AGENT_VAULT_FUZZ_SEED ?? 20261123);
const ROUNDS = Number(process.env.AGENT_VAULT_FUZZ_ROUNDS ?? 1500);

describe('randomized mutations of the fixtures never crash the validator', function () {
  this.timeout(300000);
  const docs = fixtures()
    .filter((f) => f.facts && readFileSync(f.path).length < 500_000) // keep rounds fast; the big ones are covered elsewhere
    .map((f) => ({ file: f.file, text: readFileSync(f.path, 'utf8') }));

  it(`${ROUNDS} mutations (seed ${SEED})`, () => {
    const rnd = mulberry32(SEED);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const randomValue = (): unknown =>
      pick<() => unknown>([
        () => null,
        () => true,
        () => Math.floor(rnd() * 1e6) - 5e5,
        () => rnd(),
        () => 'str-' + Math.floor(rnd() * 1000),
        () => [],
        () => ({}),
        () => [randomValue()],
        () => ({ id: 'agent-0', type: 'tool_call' }),
        () => 'message-' + Math.floor(rnd() * 30),
        () => 'tool-' + Math.floor(rnd() * 30),
        () => 'x'.repeat(Math.floor(rnd() * 5000)),
      ])();

    /** All (container, key) pairs in the document, iteratively. */
    const slots = (root: any): [any, string | number][] => {
      const out: [any, string | number][] = [];
      const stack = [root];
      while (stack.length) {
        const v = stack.pop();
        if (Array.isArray(v)) {
          v.forEach((x, i) => {
            out.push([v, i]);
            if (x && typeof x === 'object') stack.push(x);
          });
        } else if (v && typeof v === 'object') {
          for (const k of Object.keys(v)) {
            out.push([v, k]);
            if (v[k] && typeof v[k] === 'object') stack.push(v[k]);
          }
        }
      }
      return out;
    };

    const structural = (text: string): string => {
      let doc = JSON.parse(text);
      if (typeof doc === 'string') doc = JSON.parse(doc);
      const n = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < n; k++) {
        const all = slots(doc);
        if (!all.length) break;
        const [c, key] = pick(all);
        const op = Math.floor(rnd() * 5);
        if (op === 0) {
          if (Array.isArray(c)) c.splice(key as number, 1);
          else delete c[key];
        } else if (op === 1) c[key as any] = randomValue();
        else if (op === 2 && Array.isArray(c)) c.push(structuredClone(c[key as number]));
        else if (op === 3 && !Array.isArray(c)) c['extra_' + Math.floor(rnd() * 9)] = randomValue();
        else if (typeof c[key as any] === 'string') c[key as any] = pick(['', c[key as any] + '-x', 'agent-0', 'block-0', 'message-1']);
        else c[key as any] = randomValue();
      }
      return rnd() < 0.2 ? JSON.stringify(JSON.stringify(doc)) : JSON.stringify(doc, null, rnd() < 0.5 ? 2 : 0);
    };

    const textual = (text: string): string => {
      const pos = Math.floor(rnd() * text.length);
      switch (Math.floor(rnd() * 6)) {
        case 0:
          return text.slice(0, pos);
        case 1:
          return text.slice(0, pos) + text.slice(pos + 1 + Math.floor(rnd() * 50));
        case 2:
          return text.slice(0, pos) + pick(['{', '}', '[', ']', ',', ':', '"', '\\', '\u0000', '\ufeff', 'null', '\n']) + text.slice(pos);
        case 3:
          return text.slice(0, pos) + String.fromCharCode(Math.floor(rnd() * 0xffff)) + text.slice(pos + 1);
        case 4:
          return '\ufeff' + text;
        default:
          return text.slice(pos) + text.slice(0, pos);
      }
    };

    let invalid = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const base = pick(docs);
      const mutated = rnd() < 0.6 ? structural(base.text) : textual(base.text);
      let report;
      try {
        report = validateAgentFileText(mutated, `${base.file}#${round}`);
      } catch (e) {
        assert.fail(`round ${round} (${base.file}) threw: ${(e as Error).stack}`);
      }
      if (!report.valid) invalid++;
      for (const f of [...report.errors, ...report.warnings]) {
        assert.equal(typeof f.code, 'string');
        assert.ok(f.message && typeof f.message === 'string', `round ${round}: finding without a message`);
        assert.equal(typeof f.pointer, 'string');
        assert.ok(Number.isInteger(f.line) && f.line! >= 1, `round ${round}: ${f.code} at ${f.pointer} has no line`);
        assert.ok(Number.isInteger(f.column) && f.column! >= 1, `round ${round}: ${f.code} has no column`);
      }
    }
    // The mutations must really exercise the error paths.
    assert.ok(invalid > ROUNDS * 0.5, `only ${invalid} of ${ROUNDS} mutations were invalid`);
  });
});

describe('an object of the file set to null (or another non-object) is invalid input for every command that reads an .af, never an internal error', function () {
  this.timeout(120000);
  // inspect, diff and restore's plan read an .af; each either works or throws an AgentVaultError
  // (exit code 1 or 2) naming the file, as the CLI reports invalid input
  const cases: Array<{ file: string; pointer: string }> = [
    { file: 'co-3.v2.af', pointer: '/agents/0' },
    { file: 'co-3.v2.af', pointer: '/blocks/0' },
    { file: 'co-3.v2.af', pointer: '/tools/0' },
    { file: 'co-3.v2.af', pointer: '/agents/0/messages/0' },
    { file: 'co-3.v2.af', pointer: '/agents/0/llm_config' },
    { file: 'co-3.v2.af', pointer: '/agents/0/tool_rules' },
    { file: 'lettabot-builder.v2.af', pointer: '/groups/0' },
    { file: 'lettabot-builder.v2.af', pointer: '/agents/1' },
    { file: 'memgpt-agent.v1.af', pointer: '/messages/0' },
    { file: 'memgpt-agent.v1.af', pointer: '/core_memory/0' },
    { file: 'memgpt-agent.v1.af', pointer: '/tools/0' },
  ];
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'av-null-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const setAt = (doc: any, pointer: string, v: unknown): void => {
    const keys = pointer.split('/').slice(1);
    let c = doc;
    for (const k of keys.slice(0, -1)) c = c[k];
    assert.ok(c && keys[keys.length - 1] in c, `${pointer} exists`);
    c[keys[keys.length - 1]] = v;
  };
  const invalidInput = (what: string) => (e: unknown) => {
    assert.ok(e instanceof AgentVaultError, `${what}: ${(e as Error)?.stack}`);
    assert.ok(e.kind === 'failed' || e.kind === 'usage', `${what}: kind ${e.kind}`);
    return true;
  };

  for (const c of cases) {
    for (const v of [null, 7, 'x']) {
      it(`${c.file} with ${c.pointer} = ${JSON.stringify(v)}`, async () => {
        let doc = JSON.parse(readFileSync(path.join(FIXTURES_DIR, c.file), 'utf8'));
        if (typeof doc === 'string') doc = JSON.parse(doc);
        setAt(doc, c.pointer, v);
        const file = path.join(dir, `m-${c.pointer.replace(/\//g, '_')}.af`);
        writeFileSync(file, JSON.stringify(doc));
        const report = validateAgentFileText(readFileSync(file, 'utf8'), file);
        assert.equal(typeof report.valid, 'boolean', 'the validator reports (some of these are allowed, e.g. a null llm_config)');
        if (v !== null || c.pointer.split('/').length === 3) assert.equal(report.valid, false, 'the validator rejects a non-object element');
        await describeFile(file).then((d) => assert.equal(typeof d.text, 'string'), invalidInput('inspect'));
        await diffPaths(path.join(FIXTURES_DIR, c.file), file).then((r) => assert.ok(r), invalidInput('diff'));
        await planRestore(db, file).then((p) => assert.ok(p), invalidInput('restore'));
      });
    }
  }

  let db: Db;
  before(async () => {
    db = await freshLettaDb('pglite');
  });
  after(async () => db.close());

  it('inspect names the null agent and its pointer', async () => {
    const doc = JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'co-3.v2.af'), 'utf8'));
    doc.agents[0] = null;
    const file = path.join(dir, 'null-agent.af');
    writeFileSync(file, JSON.stringify(doc));
    await assert.rejects(describeFile(file), (e: unknown) => {
      assert.ok(e instanceof AgentVaultError && e.kind === 'failed');
      assert.match((e as Error).message, /null-agent\.af: \/agents\/0 is null, not an agent object/);
      return true;
    });
  });
});
