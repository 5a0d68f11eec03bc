/**
 * A corpus of broken inputs, each run through the real CLI (`agent-vault validate`): every one
 * must give a clear message naming the file, the line and (where there is one) the JSON path,
 * the documented exit code, and never a stack trace.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli, STACK_TRACE, ensureCliBuilt } from '../helpers/cli';
import { FIXTURES_DIR } from '../helpers/paths';

interface Case {
  name: string;
  /** file content; a function gets the temp dir and returns the path to validate instead */
  content: string | Buffer | ((dir: string) => string);
  exit: number;
  /** error code expected among the findings (for exit 1) */
  code?: string;
  /** JSON pointer expected on that finding */
  pointer?: string;
  /** expected line of that finding */
  line?: number;
  message?: RegExp;
}

const fx = (f: string) => readFileSync(path.join(FIXTURES_DIR, f), 'utf8');
const v2 = () => JSON.parse(fx('letta-test-basic-blocks-tools-messages.v2.af'));
const v1 = () => JSON.parse(fx('customer-service.v1.af'));
const pretty = (o: unknown) => JSON.stringify(o, null, 2);
function edit(mut: (d: any) => void, base: () => any = v2): string {
  const d = base();
  mut(d);
  return pretty(d);
}

const cases: Case[] = [
  { name: '0-byte file', content: '', exit: 1, code: 'empty', line: 1 },
  { name: 'white space only', content: ' \n\n\t ', exit: 1, code: 'empty', line: 1 },
  { name: 'truncated half-way', content: fx('letta-test-basic-blocks-tools-messages.v2.af').slice(0, 15000), exit: 1, code: 'json-syntax', message: /truncated|unterminated/ },
  { name: 'truncated to one brace', content: '{', exit: 1, code: 'json-syntax', line: 1, message: /not closed/ },
  { name: 'truncated inside a string', content: '{"agents": [{"id": "agen', exit: 1, code: 'json-syntax', line: 1, message: /unterminated string/ },
  { name: 'binary garbage', content: Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)), exit: 1, code: 'encoding', message: /not UTF-8/ },
  { name: 'NUL bytes', content: Buffer.from('{"agents": [\u0000\u0000]}'), exit: 1, code: 'json-syntax', line: 1 },
  { name: 'PNG header', content: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64)]), exit: 1, code: 'encoding' },
  { name: 'UTF-8 BOM on a valid file (accepted like Letta does, with a warning)', content: '\ufeff' + fx('letta-test-basic-blocks-tools-messages.v2.af'), exit: 0, code: 'bom', line: 1 },
  { name: 'UTF-8 BOM on a broken file', content: '\ufeff{"agents": [}', exit: 1, code: 'json-syntax', line: 1 },
  { name: 'trailing comma', content: '{\n  "agents": [],\n}', exit: 1, code: 'json-syntax', line: 3, message: /trailing comma/ },
  { name: 'comment', content: '{\n  // a comment\n  "agents": []\n}', exit: 1, code: 'json-syntax', line: 2, message: /comments are not allowed/ },
  { name: 'single quotes', content: "{'agents': []}", exit: 1, code: 'json-syntax', line: 1 },
  { name: 'two documents', content: '{"agents": []}\n{"agents": []}', exit: 1, code: 'json-syntax', line: 2, message: /after the end/ },
  { name: 'root is an array', content: '[1, 2, 3]', exit: 1, code: 'unknown-format', message: /array/ },
  { name: 'root is null', content: 'null', exit: 1, code: 'unknown-format' },
  { name: 'an unrelated JSON object', content: '{"name": "x", "version": 3}', exit: 1, code: 'unknown-format', message: /neither "agents"/ },
  { name: 'encoded three times', content: JSON.stringify(JSON.stringify(JSON.stringify({ agents: [] }))), exit: 1, code: 'unknown-format', message: /more than twice/ },
  { name: 'double-encoded, inner truncated', content: JSON.stringify(fx('letta-test-basic-blocks-tools-messages.v2.af').slice(0, 900)), exit: 1, code: 'json-syntax', message: /double-encoded/ },
  { name: '10,000-deep nesting as the root', content: '['.repeat(10000) + ']'.repeat(10000), exit: 1, code: 'unknown-format' },
  {
    name: '10,000-deep nesting inside a wrongly typed field',
    // built as text: JSON.stringify itself cannot go 10,000 levels deep
    content: edit((d) => (d.agents[0].tool_ids = '@DEEP@')).replace('"@DEEP@"', '{"x": '.repeat(10000) + '"bottom"' + '}'.repeat(10000)),
    exit: 1,
    code: 'schema-type',
    pointer: '/agents/0/tool_ids',
  },
  { name: 'agents is not an array', content: edit((d) => (d.agents = { a: 1 })), exit: 1, code: 'schema-type', pointer: '/agents', message: /expected an array, found an object/ },
  { name: 'wrong type: block limit is a string', content: edit((d) => (d.blocks[0].limit = 'lots')), exit: 1, code: 'schema-type', pointer: '/blocks/0/limit' },
  { name: 'wrong type: message role is a number', content: edit((d) => (d.agents[0].messages[0].role = 7)), exit: 1, pointer: '/agents/0/messages/0/role' },
  { name: 'missing required top-level field', content: edit((d) => delete d.tools), exit: 1, code: 'schema-required', pointer: '', message: /"tools"/ },
  { name: 'missing block label', content: edit((d) => delete d.blocks[1].label), exit: 1, code: 'schema-required', pointer: '/blocks/1', message: /"label"/ },
  { name: 'missing message id', content: edit((d) => delete d.agents[0].messages[2].id), exit: 1, code: 'schema-required', pointer: '/agents/0/messages/2' },
  { name: 'duplicate block ids', content: edit((d) => (d.blocks[1].id = d.blocks[0].id)), exit: 1, code: 'duplicate-id', pointer: '/blocks/1' },
  { name: 'a tool id equal to a block id', content: edit((d) => (d.tools[0].id = d.blocks[0].id)), exit: 1, code: 'duplicate-id' },
  { name: 'dangling tool id', content: edit((d) => d.agents[0].tool_ids.push('tool-999')), exit: 1, code: 'dangling-reference', message: /tool "tool-999"/ },
  { name: 'dangling block id', content: edit((d) => (d.agents[0].block_ids[0] = 'block-404')), exit: 1, code: 'dangling-reference', pointer: '/agents/0/block_ids/0' },
  { name: 'dangling in-context message id', content: edit((d) => d.agents[0].in_context_message_ids.push('message-404')), exit: 1, code: 'dangling-reference', message: /message "message-404"/ },
  {
    name: 'dangling group member',
    content: edit((d) => (d.groups = [{ id: 'group-0', agent_ids: ['agent-0', 'agent-9'], description: '', manager_config: { manager_type: 'round_robin' } }])),
    exit: 1,
    code: 'dangling-reference',
    pointer: '/groups/0/agent_ids/1',
  },
  { name: 'block reference that is really a tool', content: edit((d) => (d.agents[0].block_ids[0] = d.tools[0].id)), exit: 1, code: 'dangling-reference', message: /is a tool/ },
  {
    name: 'orphaned in-context tool call (its return dropped)',
    content: edit((d) => {
      const a = d.agents[0];
      const ret = a.messages.find((m: any) => m.role === 'tool');
      a.in_context_message_ids = a.in_context_message_ids.filter((id: string) => id !== ret.id);
    }),
    exit: 1,
    code: 'orphaned-tool-call',
  },
  {
    name: 'orphaned in-context tool return (its call dropped)',
    content: edit((d) => {
      const a = d.agents[0];
      const call = a.messages.find((m: any) => Array.isArray(m.tool_calls) && m.tool_calls.length);
      a.in_context_message_ids = a.in_context_message_ids.filter((id: string) => id !== call.id);
    }),
    exit: 1,
    code: 'orphaned-tool-return',
  },
  { name: 'two blocks with one label on an agent', content: edit((d) => (d.blocks[1].label = d.blocks[0].label)), exit: 1, code: 'duplicate-block-label' },
  { name: 'v1: in-context index out of range', content: edit((d) => d.in_context_message_indices.push(999), v1), exit: 1, code: 'dangling-reference', pointer: '/in_context_message_indices/4' },
  { name: 'v1: core_memory is not an array', content: edit((d) => (d.core_memory = 'persona'), v1), exit: 1, pointer: '/core_memory' },
  { name: 'a 50 MB string where an array belongs', content: edit((d) => (d.agents[0].tool_ids = 'x'.repeat(50 * 1024 * 1024))), exit: 1, code: 'schema-type', pointer: '/agents/0/tool_ids' },
  { name: 'a 50 MB system prompt (valid)', content: edit((d) => (d.agents[0].system = 'y'.repeat(50 * 1024 * 1024))), exit: 0 },
  {
    name: 'a folder instead of a file',
    content: (dir) => {
      const p = path.join(dir, 'a-folder.af');
      mkdirSync(p);
      return p;
    },
    exit: 2,
    message: /folder|directory/,
  },
  { name: 'a file that does not exist', content: (dir) => path.join(dir, 'missing.af'), exit: 2, message: /no such file/ },
];

describe('broken inputs through `agent-vault validate`', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    ensureCliBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'av-broken-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('has at least 30 broken inputs', () => assert.ok(cases.filter((c) => c.exit !== 0).length >= 30));

  cases.forEach((c, i) => {
    it(`${c.name}: exit ${c.exit}${c.code ? `, ${c.code}` : ''}`, () => {
      let file: string;
      if (typeof c.content === 'function') file = c.content(dir);
      else {
        file = path.join(dir, `case-${i}.af`);
        writeFileSync(file, c.content);
      }
      const r = runCli(['validate', '--json', file]);
      assert.doesNotMatch(r.stderr + r.stdout, STACK_TRACE, 'no stack trace');
      assert.doesNotMatch(r.stderr, /internal error/);
      assert.equal(r.code, c.exit, `exit code; stderr: ${r.stderr.slice(0, 500)}`);
      const [rep] = JSON.parse(r.stdout);
      if (c.exit === 2) {
        assert.match(r.stderr, c.message ?? /./);
        assert.ok(r.stderr.includes(file), 'the message names the file');
        return;
      }
      const findings = [...rep.errors, ...rep.warnings];
      const f = c.code ? findings.find((x: any) => x.code === c.code) : findings[0];
      if (c.exit === 0 && !c.code) {
        assert.equal(rep.valid, true);
        return;
      }
      assert.ok(f, `expected finding ${c.code}; got ${JSON.stringify(findings).slice(0, 800)}`);
      if (c.pointer !== undefined) assert.equal(f.pointer, c.pointer);
      if (c.line !== undefined) assert.equal(f.line, c.line);
      if (c.message) assert.match(f.message, c.message);
      assert.ok(Number.isInteger(f.line) && f.line >= 1, 'names a line');
      assert.ok(Number.isInteger(f.column) && f.column >= 1, 'names a column');
      assert.ok(f.message.length < 2000, 'message stays short even for huge values');
      // The human-readable form names file:line:column too.
      const h = runCli(['validate', file]);
      assert.equal(h.code, c.exit);
      assert.ok(h.stdout.includes(`${file}:${f.line}:${f.column}`), `text output names ${file}:${f.line}:${f.column}:\n${h.stdout.slice(0, 600)}`);
    });
  });
});
