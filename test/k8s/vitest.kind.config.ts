import { defineConfig } from 'vitest/config';

/** The client tests kind-e2e.sh runs against a pod-manager in a kind cluster (SPLICE_E2E_URL). */
export default defineConfig({
  test: {
    include: ['src/**/*.kind.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    // The first call of a module waits for its pod: image, npm install in the init container, start.
    hookTimeout: 300_000,
  },
});
