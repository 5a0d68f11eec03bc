'use strict';
/**
 * Mocha's spec reporter plus a closing line `<suite>: N passed, N failed[, N skipped]` that CI
 * reads. With AGENT_VAULT_COUNTS_FILE set, the counts are also appended there (one JSON line) so
 * scripts/test.sh can print the grand total of several mocha runs.
 */
const Mocha = require('mocha');
const fs = require('node:fs');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const label = process.env.AGENT_VAULT_SUITE || 'tests';
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats || {};
      const passed = s.passes || 0;
      const failed = s.failures || 0;
      const skipped = s.pending || 0;
      // printed after the spec reporter's epilogue
      process.nextTick(() => {
        console.log(`${label}: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
      });
      if (process.env.AGENT_VAULT_COUNTS_FILE) {
        fs.appendFileSync(process.env.AGENT_VAULT_COUNTS_FILE, JSON.stringify({ label, passed, failed, skipped }) + '\n');
      }
    });
  }
}

module.exports = SummaryReporter;
