/**
 * The main thread's side of the callback relay: starts the relay thread (callback-worker.ts) and
 * gives the runtime a {@link CallbackChannel} whose `waitFor` blocks this thread (`Atomics.wait`)
 * until the app's answer arrives, while the relay thread keeps serving the callback endpoint. Only
 * a stub that module code calls blocks: every other call is served as before.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel, MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { CallbackChannel, CallbackMessage } from '@splice-orc/runtime';
import type { CallbackWorkerData, RelayCommand } from './callback-worker.js';

/** Options of {@link startCallbackRelay}. */
export interface CallbackRelayOptions {
  /** The credential of callback exchanges; may be given later with `setSecret`. */
  secret?: string | undefined;
  host: string;
  /** Port of the callback endpoint; 0 picks a free one. */
  port: number;
  serverId: string;
  maxMessageBytes: number;
  /** How long a queued request waits for the app to collect it, ms. Default 10 000. */
  absentMs?: number;
}

/** A relay: usable at once (requests wait in its thread's queue until it runs). */
export interface CallbackRelay {
  /** The port of the callback endpoint, once its thread listens. */
  readonly listening: Promise<number>;
  readonly channel: CallbackChannel;
  /** Gives the relay the credential it checks (when it was not known at start). */
  setSecret(secret: string): void;
  close(): Promise<void>;
}

/**
 * Taken when this file loads, before module code does: module code may replace
 * `MessagePort.prototype.postMessage` (and rebind the module's exports) to be handed the ports the
 * server uses. With `Worker.prototype.postMessage` that was the worker's own public port, whose
 * listener leads to the Worker object and its original class; commands now go on a channel of
 * their own, posted with the original method, so no port reaches module code that way.
 */
const post = MessagePort.prototype.postMessage;
const receive = receiveMessageOnPort;

/** The relay thread's script: built beside this file, or in dist when this runs from source (tests). */
function workerScript(): URL {
  const built = new URL('./callback-worker.js', import.meta.url);
  return existsSync(fileURLToPath(built)) ? built : new URL('../dist/callback-worker.js', import.meta.url);
}

/**
 * Starts the relay thread. It boots beside whatever this thread does meanwhile (the module-server
 * starts it before loading its own code and the module); `listening` says when its endpoint is up.
 */
export function startCallbackRelay(options: CallbackRelayOptions): CallbackRelay {
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const { port1: replies, port2: theirs } = new MessageChannel();
  const { port1: commands, port2: theirCommands } = new MessageChannel();
  const workerData: CallbackWorkerData = {
    secret: options.secret,
    host: options.host,
    port: options.port,
    serverId: options.serverId,
    maxMessageBytes: options.maxMessageBytes,
    absentMs: options.absentMs ?? 10_000,
    signal,
    replies: theirs,
    commands: theirCommands,
  };
  // Module code shares this process, not this thread's globals: the relay has its own isolate.
  // Its environment is empty: the server's secret, if it came that way, is not copied into it.
  const worker = new Worker(workerScript(), { workerData, transferList: [theirs, theirCommands], env: {} });
  const listening = new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', (m: { t: string; port?: number; message?: string }) =>
      m.t === 'listening' && typeof m.port === 'number'
        ? resolve(m.port)
        : reject(new Error(`the callback relay did not start: ${m.message ?? m.t}`)),
    );
  });
  listening.catch(() => {});
  worker.on('error', () => {});
  let listener: (message: CallbackMessage) => void = () => {};
  replies.on('message', (m: CallbackMessage) => listener(m));
  // Neither keeps the process alive once the relay listens (the gRPC server does while it serves);
  // until then the worker does: a server waiting only for its relay must not exit meanwhile.
  replies.unref();
  listening.then(
    () => worker.unref(),
    () => worker.unref(),
  );
  const command = (c: RelayCommand) => post.call(commands, c);
  const channel: CallbackChannel = {
    send: (session, request, callback, args) => command({ t: 'request', session, request, callback, args }),
    abandon: (session, request) => command({ t: 'abandon', session, request }),
    dropped: (session, items) => command({ t: 'dropped', session, items }),
    listen: (l) => {
      listener = l;
    },
    waitFor(request, deadline) {
      for (;;) {
        // Read the word before draining the port: a message that lands after the drain bumps it,
        // so the wait below returns at once instead of missing it.
        const seen = Atomics.load(signal, 0);
        for (let got = receive(replies); got; got = receive(replies)) {
          const m = got.message as CallbackMessage;
          if ((m.t === 'answer' || m.t === 'failure') && m.request === request) return m;
          listener(m);
        }
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        Atomics.wait(signal, 0, seen, left);
      }
    },
  };
  return {
    listening,
    channel,
    setSecret: (secret) => command({ t: 'secret', secret }),
    close: async () => {
      replies.close();
      commands.close();
      // Under the permission model (module code in this process is hostile) the worker is left to
      // end with the process: `terminate` listens for its 'exit' through EventEmitter.prototype,
      // which module code can replace to catch the Worker object (and its original class).
      if (!(process as { permission?: unknown }).permission) await worker.terminate();
    },
  };
}
