/** Where the container tests find the repository, the fixtures and the images' cache. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** test/fixtures, mounted read-only at /fixtures in the containers that install from it. */
export const fixturesDir = join(repoRoot, 'test/fixtures');
/** docker/build-images.sh's cache (its CACHE variable); the tests keep their tools there too. */
export const cacheDir =
  process.env.CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'splice-orc-images');
/** Debian's Docker client, which speaks to Debian's engine (a newer client may be first on PATH). */
export const dockerCli = process.env.DOCKER ?? '/usr/bin/docker';
