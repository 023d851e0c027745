/**
 * What is changed at runtime and must survive a restart of the pod-manager: module configs set
 * with `PUT /modules/:name/config`, modes set with `POST /modules/:name/load {mode}`, and the
 * policy. One JSON file, written atomically (temp file + rename).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RawModuleConfig } from '../config.js';
import type { PolicySettings } from '../placement/policy.js';

/** The persisted state. */
export interface RuntimeState {
  modules: Record<string, RawModuleConfig>;
  modes: Record<string, RawModuleConfig['load_type']>;
  /** Only when set at runtime (PUT /policy): otherwise the config file's policy applies. */
  policy?: PolicySettings | undefined;
}

/** Reads the state file; a missing file is an empty state, a broken one an error naming it. */
export function readState(path: string): RuntimeState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { modules: {}, modes: {} };
  }
  try {
    const state = JSON.parse(text) as Partial<RuntimeState>;
    return { modules: state.modules ?? {}, modes: state.modes ?? {}, policy: state.policy };
  } catch (cause) {
    throw new Error(`state file ${path} is not valid JSON (${(cause as Error).message}); fix or delete it`);
  }
}

/** Writes the state file atomically. */
export function writeState(path: string, state: RuntimeState): void {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
    fsyncSync(fd); // the rename must not outlive the data after a power loss
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}
