/**
 * The reading of Letta's log that every real-server test relies on ("no server error in Letta's
 * log"): an error record counts with its traceback, and only the records of a named Letta defect
 * (KNOWN_LETTA_DEFECTS) are left out — never the record after it. Pure, no server needed.
 */
import assert from 'node:assert/strict';
import { errorLines, knownDefects } from '../helpers/letta-server';

const RACE = [
  'Letta.letta.utils - ERROR - record_step_metrics failed with UniqueConstraintViolationError: A unique constraint was violated for StepMetrics. Check your input for duplicates: (sqlalchemy.dialects.postgresql.asyncpg.IntegrityError) <class \'asyncpg.exceptions.UniqueViolationError\'>: duplicate key value violates unique constraint "step_metrics_pkey"',
  'DETAIL:  Key (id)=(step-1fe76f2c-67fc-40b0-9317-ff63b7b77f88) already exists.',
  'Traceback (most recent call last):',
  '  File "/x/site-packages/sqlalchemy/dialects/postgresql/asyncpg.py", line 545, in _prepare_and_execute',
  '    self._rows = deque(await prepared_stmt.fetch(*parameters))',
  'asyncpg.exceptions.UniqueViolationError: duplicate key value violates unique constraint "step_metrics_pkey"',
  '',
  'The above exception was the direct cause of the following exception:',
  '',
  'Traceback (most recent call last):',
  '  File "/x/site-packages/letta/utils.py", line 1192, in wrapper',
  '    await coro',
];

describe('Letta log reading (errors counted, known Letta defects named)', () => {
  it('counts an ERROR record and each traceback in it', () => {
    const log = [
      'Letta.letta.server.server - INFO - started',
      'Letta.letta.agents.x - ERROR - boom',
      'Traceback (most recent call last):',
      '  File "a.py", line 1',
      'ValueError: boom',
      'INFO:     127.0.0.1:1 - "POST /v1/x HTTP/1.1" 500 Internal Server Error',
    ].join('\n');
    const e = errorLines(log);
    assert.equal(e.length, 3);
    assert.match(e[0], /ERROR - boom/);
    assert.match(e[1], /^Traceback/);
    assert.match(e[2], /500 Internal Server Error/);
  });

  it('counts a 500 access line but not an INFO line that merely contains the number 500', () => {
    const log = ['Letta.letta.services.passage_manager - INFO - Created 500 passages', 'INFO:     127.0.0.1:2 - "GET /v1/y HTTP/1.1" 500', 'INFO:     127.0.0.1:3 - "GET /v1/z HTTP/1.1" 200 OK'].join(
      '\n',
    );
    const e = errorLines(log);
    assert.equal(e.length, 1, e.join('\n'));
    assert.match(e[0], /HTTP\/1\.1" 500\b/);
  });

  it('leaves out the step_metrics race record with its chained tracebacks, and names it', () => {
    const log = ['Letta.letta.server.server - INFO - started', ...RACE, 'INFO:     127.0.0.1:1 - "POST /v1/agents/a/messages HTTP/1.1" 200 OK'].join('\n');
    assert.deepEqual(errorLines(log), []);
    assert.deepEqual(knownDefects(log), { 'step_metrics race (record_step_metrics scheduled twice per step)': 1 });
  });

  it('still counts an error record that follows the race record, and a race on another constraint', () => {
    const other = 'Letta.letta.utils - ERROR - record_step_metrics failed with UniqueConstraintViolationError: duplicate key value violates unique constraint "steps_pkey"';
    const log = [...RACE, 'Letta.letta.services.agent_manager - ERROR - real failure', 'Traceback (most recent call last):', other].join('\n');
    const e = errorLines(log);
    assert.equal(e.length, 3, e.join('\n'));
    assert.match(e[0], /real failure/);
    assert.match(e[1], /^Traceback/);
    assert.match(e[2], /steps_pkey/);
  });
});
