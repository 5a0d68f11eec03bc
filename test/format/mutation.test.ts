/**
 * Randomized mutation test: thousands of seeded mutations of the real fixtures (structural edits
 * of the parsed document and byte-level edits of the text). The validator must never throw and
 * every finding must carry a code, a message, a pointer and a position.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { validateAgentFileText } from '../../src/format/validate';
import { fixtures } from '../helpers/paths';

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
        if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), x && typeof x === 'object' && stack.push(x)));
        else if (v && typeof v === 'object') for (const k of Object.keys(v)) (out.push([v, k]), v[k] && typeof v[k] === 'object' && stack.push(v[k]));
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
        if (op === 0) Array.isArray(c) ? c.splice(key as number, 1) : delete c[key];
        else if (op === 1) c[key as any] = randomValue();
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
