/** Jest runs the stack's tests in cdk/ through ts-jest (transpile only: `tsc` type-checks separately). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/cdk'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  // Synthesizing a stack takes a few seconds on a busy machine.
  testTimeout: 60000,
};
