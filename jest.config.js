/** Jest runs the stack's tests in test/ through ts-jest (transpile only: `tsc` type-checks separately). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  // Synthesizing a stack takes a few seconds on a busy machine.
  testTimeout: 60000,
};
