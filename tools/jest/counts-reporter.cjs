// Appends this run's totals to the file named by SR_TEST_COUNTS (if set), so
// the test script can print the plain `N passed, N failed` line CI reads.
const { appendFileSync } = require('node:fs');

class CountsReporter {
  onRunComplete(_contexts, results) {
    const file = process.env.SR_TEST_COUNTS;
    if (!file) return;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    appendFileSync(file, `${results.numPassedTests} ${failed}\n`);
  }
}

module.exports = CountsReporter;
