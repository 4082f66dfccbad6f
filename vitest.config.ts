import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs keeps a global engine per process: isolate files in forks, two at a time on CI's 2 cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
