import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // Builds the images (docker/build-images.sh, cached) and grpc-health-probe once for the run.
    globalSetup: ['src/global-setup.ts'],
    // Two cores: one container role at a time, so start-up times stay far from the deadlines.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
