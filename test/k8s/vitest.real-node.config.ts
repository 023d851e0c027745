import { defineConfig } from 'vitest/config';

/**
 * The real-node suite (`pnpm test:real-node`, root): module pods as real containers on a kubelet
 * that real-node.sh joins to the control plane; the images come from docker/build-images.sh.
 */
export default defineConfig({
  test: {
    include: ['src/real-node/**/*.real.ts'],
    globalSetup: ['src/real-node/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 900_000,
  },
});
