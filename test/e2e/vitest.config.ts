import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // Each file starts real pod-manager and module-server processes: on two cores they run one
    // file at a time so that timing-sensitive behaviour (restarts, deadlines) is not starved.
    fileParallelism: false,
    execArgv: ['--expose-gc'],
    testTimeout: 30_000,
    // The first start of a module runs npm install.
    hookTimeout: 180_000,
  },
});
