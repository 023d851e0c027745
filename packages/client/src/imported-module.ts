/**
 * What the modules the import hook generates import: one client per process, connected to
 * `POD_MANAGER_URL` (with `SPLICE_AUTH_TOKEN`) on first use, as `connect()` would be.
 */
import { connect, type SpliceClient } from './connect.js';
import type { Remote } from './types.js';

let client: SpliceClient | undefined;

/** The remote module `name`, from the process's one client. */
// biome-ignore lint/suspicious/noExplicitAny: an imported module is untyped here; the app types it (README)
export function importedModule(name: string): Remote<any> {
  client ??= connect();
  return client.module(name);
}
