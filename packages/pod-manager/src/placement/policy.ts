/**
 * Placement: whether a module runs remotely (module-servers behind the pod-manager) or locally
 * (imported by each client in its own process), decided per module by the active policy (JSORC's
 * module / remote / auto with its action policies).
 *
 * - `default`: follow load_type; `auto` means remote.
 * - `adaptive`: for `auto` modules, every interval, from the call statistics clients report (the
 *   history halves every interval, so recent calls weigh most):
 *     gain(m)  = remote mean ms - local mean ms (local unknown: 0)   time saved per call if local
 *     score(m) = share(m) * gain(m)                                  share: m's part of auto calls
 *   Modules are taken by score per MiB of declared memory (lib_mem_size_req, unknown: 256Mi),
 *   highest first, and placed local while gain >= min_gain_ms and their memory fits the client
 *   memory budget (the smallest budget any client reported, else policy.client_memory_budget);
 *   the rest are remote. A module without reported calls keeps its placement; one that some
 *   client cannot import stays remote until its mode is set again.
 */
import { bytesFromQuantity } from '@splice-orc/protocol';
import type { ModuleSpec } from '../config.js';

/** Where a module's calls run. */
export type Placement = 'remote' | 'local';

/** Settings of the placement policy (`policy` in the config, `PUT /policy`). */
export interface PolicySettings {
  name: 'default' | 'adaptive';
  /** How often the adaptive policy re-evaluates, s. */
  interval_s: number;
  /** Memory a client may give local modules when it reports none (Kubernetes quantity). */
  client_memory_budget: string;
  /** Least time saved per call, ms, for local placement to be worth it. */
  min_gain_ms: number;
}

/** Calls of one module as clients reported them (decayed sums). */
export interface ModuleCallStats {
  local: { calls: number; totalMs: number };
  remote: { calls: number; totalMs: number };
  /** A client could not import the module, so it cannot run locally there. */
  localUnavailable: boolean;
}

/** Inputs of one evaluation. */
export interface PolicyInputs {
  modules: ReadonlyArray<ModuleSpec & { mode: ModuleSpec['loadType'] }>;
  stats: ReadonlyMap<string, ModuleCallStats>;
  /** Smallest memory budget reported by clients, bytes; undefined when none did. */
  clientBudget: number | undefined;
  current: ReadonlyMap<string, Placement>;
}

/** A placement and why. */
export interface Decision {
  placement: Placement;
  reason: string;
}

const MiB = 1024 * 1024;

export { bytesFromQuantity };

const UNKNOWN_MEMORY = 256 * MiB;

/** Decides every module's placement under the given policy. */
export function decide(settings: PolicySettings, inputs: PolicyInputs): Map<string, Decision> {
  const out = new Map<string, Decision>();
  const auto: PolicyInputs['modules'][number][] = [];
  for (const m of inputs.modules) {
    // A Node client cannot import a Python module: whatever its mode, it runs on module-servers.
    if (m.runtime === 'python')
      out.set(m.name, {
        placement: 'remote',
        reason: `a Python module runs on module-servers only${m.mode === 'local' ? ' (load_type local ignored)' : ''}`,
      });
    else if (m.mode !== 'auto') out.set(m.name, { placement: m.mode, reason: `load_type ${m.mode}` });
    else if (settings.name === 'default')
      out.set(m.name, { placement: 'remote', reason: 'default policy: auto means remote' });
    else auto.push(m);
  }
  if (auto.length === 0) return out;

  const budget = inputs.clientBudget ?? bytesFromQuantity(settings.client_memory_budget);
  const totalCalls = auto.reduce((sum, m) => sum + callsOf(inputs.stats.get(m.name)), 0);
  const candidates = [];
  for (const m of auto) {
    const stats = inputs.stats.get(m.name);
    const calls = callsOf(stats);
    const current = inputs.current.get(m.name) ?? 'remote';
    if (!stats || calls === 0) {
      out.set(m.name, {
        placement: current,
        reason: 'adaptive: no calls reported in the last window; unchanged',
      });
      continue;
    }
    if (stats.localUnavailable) {
      out.set(m.name, { placement: 'remote', reason: 'adaptive: a client cannot import it locally' });
      continue;
    }
    if (stats.remote.calls === 0) {
      out.set(m.name, { placement: current, reason: 'adaptive: no remote latency measured yet; unchanged' });
      continue;
    }
    const remoteMs = stats.remote.totalMs / stats.remote.calls;
    const localMs = stats.local.calls > 0 ? stats.local.totalMs / stats.local.calls : 0;
    const gain = remoteMs - localMs;
    const share = calls / totalCalls;
    const memory = m.memory ? bytesFromQuantity(m.memory) : UNKNOWN_MEMORY;
    candidates.push({ m, remoteMs, localMs, gain, share, memory, score: share * gain });
  }
  candidates.sort((a, b) => b.score / b.memory - a.score / a.memory);
  let used = 0;
  for (const c of candidates) {
    const numbers = `remote ${c.remoteMs.toFixed(2)} ms, local ${c.localMs.toFixed(2)} ms, ${(c.share * 100).toFixed(0)}% of auto calls, needs ${formatBytes(c.memory)}`;
    if (c.gain < settings.min_gain_ms) {
      out.set(c.m.name, {
        placement: 'remote',
        reason: `adaptive: saves ${c.gain.toFixed(2)} ms/call < min_gain_ms ${settings.min_gain_ms} (${numbers})`,
      });
    } else if (used + c.memory > budget) {
      out.set(c.m.name, {
        placement: 'remote',
        reason: `adaptive: would exceed the client memory budget ${formatBytes(budget)} (${formatBytes(used)} used; ${numbers})`,
      });
    } else {
      used += c.memory;
      out.set(c.m.name, {
        placement: 'local',
        reason: `adaptive: saves ${c.gain.toFixed(2)} ms/call (${numbers}; ${formatBytes(used)} of ${formatBytes(budget)} budget)`,
      });
    }
  }
  return out;
}

function callsOf(stats: ModuleCallStats | undefined): number {
  return stats ? stats.local.calls + stats.remote.calls : 0;
}

function formatBytes(bytes: number): string {
  return `${Math.round(bytes / MiB)}Mi`;
}
