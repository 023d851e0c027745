/**
 * The last line an installer (npm, pip, uv) printed for each module while it installs, so that
 * `GET /modules/:name` and `splice-orc modules load` can show what the install is doing.
 */

/** Longest line kept, characters. */
const MAX_LINE = 200;
const lines = new Map<string, string>();

/** Notes what an installer printed for `module` (its last non-empty line is kept). */
export function noteInstallOutput(module: string, chunk: string): void {
  const last = chunk
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .at(-1);
  if (last !== undefined) lines.set(module, last.slice(0, MAX_LINE));
}

/** The installer's last line for `module`, if an install printed one. */
export function installOutput(module: string): string | undefined {
  return lines.get(module);
}

/** Forgets it (the install ended). */
export function clearInstallOutput(module: string): void {
  lines.delete(module);
}
