import { strict as assert } from 'node:assert';
import path from 'node:path';
import { runCli, STACK_TRACE } from '../helpers/cli';
import { FIXTURES_DIR } from '../helpers/paths';

describe('agent-vault demo (README first command, embedded PGlite)', function () {
  this.timeout(300000);

  it('seeds, exports, restores into a second database and proves both agree', () => {
    const files = ['lettabot-builder.v2.af', 'memgpt-agent-with-convo.v1.af', 'void.v2.af'].map((f) => path.join(FIXTURES_DIR, f));
    const r = runCli(['demo', '--passages', '8', '--dim', '64', ...files], { timeoutMs: 280000 });
    assert.doesNotMatch(r.stdout + r.stderr, STACK_TRACE);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // lettabot-builder has two agents (a sleeptime group), the others one each.
    assert.match(r.stdout, /seeded 3 agent files .*: 4 agents, \d+ messages, 32 archival passages \(64-dim vectors\)/);
    assert.match(r.stdout, /dry run against an empty second database: 4 to create, 0 refusals/);
    assert.match(r.stdout, /all 4 agents equal/);
    assert.match(r.stdout, /^OK: the restored agents are the agents that were backed up\.$/m);
  });

  it('refuses a file that is not an agent file, naming it, with exit 1 and no stack trace', () => {
    const r = runCli(['demo', path.join(FIXTURES_DIR, 'README.md')], { timeoutMs: 120000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /README\.md/);
    assert.doesNotMatch(r.stdout + r.stderr, STACK_TRACE);
  });
});
