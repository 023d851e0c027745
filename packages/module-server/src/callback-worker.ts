/**
 * The callback relay's thread (INVOKE.md 3.7). Module code runs on the main thread and may block
 * there on a synchronous callback; this thread serves the callback endpoint meanwhile: a gRPC
 * server of its own (standard framing, the same credential) whose only method is `Invoke` with a
 * `callbacks` program. The app (through the pod-manager) long-polls it: answers go to the main
 * thread (a MessagePort, then a notify on the shared word the main thread waits on), requests the
 * main thread queued go back in the poll's answer.
 *
 * Lifetimes: a session's requests fail at once when its last waiting poll is cancelled (the app
 * went away) or when it says `close`; and when requests wait for the app (to be collected, or to be
 * answered) while no poll of it waits and no exchange of it has come for `absentMs`, they fail too
 * (an app that died between two exchanges, or that blocks its own thread that long).
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import {
  type CallbackRequest,
  Code,
  createGrpcServer,
  type DroppedCallback,
  decode,
  decodeMessage,
  encode,
  encodeMessage,
  type GrpcServerCall,
  grpcStatusFromCode,
  INVOKE_PATH,
  MAX_CALLBACK_ITEMS,
  PayloadSpec,
  PROGRAM_VERSION,
  parseCallbacksRequest,
  SpliceError,
} from '@splice-orc/protocol/wire';
import type { CallbackMessage } from '@splice-orc/runtime';
import { credentialCheck, UNAUTHENTICATED_MESSAGE } from './credential.js';

/** What the main thread starts this thread with. */
export interface CallbackWorkerData {
  /** Undefined when it comes later (a `secret` command): until then every call is refused. */
  secret?: string | undefined;
  host: string;
  port: number;
  serverId: string;
  maxMessageBytes: number;
  /** How long a queued request waits for a poll to collect it before it fails, ms. */
  absentMs: number;
  /** The word the main thread waits on: bumped and notified after each message to it. */
  signal: Int32Array;
  /** Where messages to the main thread go. */
  replies: MessagePort;
  /** Where the main thread's commands come from. */
  commands: MessagePort;
}

/** What the main thread sends this thread. */
export type RelayCommand =
  | { t: 'secret'; secret: string }
  | { t: 'request'; session: string; request: number; callback: string; args: Uint8Array }
  | { t: 'abandon'; session: string; request: number }
  | { t: 'dropped'; session: string; items: DroppedCallback[] };

interface Poll {
  call: GrpcServerCall;
  timer: NodeJS.Timeout;
}

interface SessionState {
  /** Requests no poll has collected yet. */
  queue: CallbackRequest[];
  /** Requests collected by a poll whose first answer has not come. */
  open: Set<number>;
  /** Stubs the main thread's collector took, for the app to forget (sent with the next answer). */
  dropped: DroppedCallback[];
  polls: Poll[];
  absent?: NodeJS.Timeout | undefined;
  /** Set when the last waiting poll was cancelled; cleared by the next poll. */
  gone: boolean;
  closed: boolean;
}

const data = workerData as CallbackWorkerData;
/** Most sessions kept; past it, those with nothing waiting are forgotten. */
const MAX_SESSIONS = 10_000;
const sessions = new Map<string, SessionState>();
/** Sessions the app closed, most recent last (bounded): their late exchanges are answered at once. */
const closed = new Set<string>();

function remember(session: string): void {
  closed.add(session);
  if (closed.size > MAX_SESSIONS) closed.delete(closed.values().next().value as string);
}
let authorized = data.secret ? credentialCheck(data.secret) : () => false;

function toMain(message: CallbackMessage): void {
  data.replies.postMessage(message);
  Atomics.add(data.signal, 0, 1);
  Atomics.notify(data.signal, 0);
}

function stateOf(session: string): SessionState {
  let state = sessions.get(session);
  if (!state) {
    if (sessions.size >= MAX_SESSIONS) {
      for (const [id, s] of sessions) {
        // Dropped stubs do not hold a session: an app that comes back after that only keeps a few
        // functions it could have forgotten.
        if (s.queue.length === 0 && s.open.size === 0 && s.polls.length === 0) sessions.delete(id);
      }
    }
    state = { queue: [], open: new Set(), dropped: [], polls: [], gone: false, closed: false };
    sessions.set(session, state);
  }
  return state;
}

/** Fails every request of the session that waits for the app (queued or collected). */
function failAll(session: string, state: SessionState, message: string): void {
  clearTimeout(state.absent);
  state.absent = undefined;
  for (const { request } of state.queue.splice(0)) toMain({ t: 'failure', session, request, message });
  for (const request of state.open) toMain({ t: 'failure', session, request, message });
  state.open.clear();
}

/**
 * Answers an exchange with `requests` and, when the session is given, the stubs dropped since the
 * last answer; false when its caller is already gone (nothing was sent, nothing taken).
 */
function respond(call: GrpcServerCall, requests: CallbackRequest[], state?: SessionState): boolean {
  if (call.cancelled) return false;
  const dropped = state?.dropped.splice(0, MAX_CALLBACK_ITEMS) ?? [];
  const value =
    dropped.length > 0 ? { server: data.serverId, requests, dropped } : { server: data.serverId, requests };
  const payload = encode({ v: PROGRAM_VERSION, ok: true, value, lease: 0 });
  call.write(encodeMessage(PayloadSpec, { payload }));
  call.end();
  return true;
}

/** Up to the limit of the queued requests, now counted as collected. */
function take(state: SessionState): CallbackRequest[] {
  const requests = state.queue.splice(0, MAX_CALLBACK_ITEMS);
  for (const { request } of requests) state.open.add(request);
  return requests;
}

function deliver(session: string, state: SessionState): void {
  while (state.queue.length > 0 || state.dropped.length > 0) {
    const poll = state.polls.shift();
    if (!poll) break;
    clearTimeout(poll.timer);
    const requests = take(state);
    if (!respond(poll.call, requests, state)) {
      // Its caller is gone: the requests go to the next poll (or fail with the app).
      state.queue.unshift(...requests);
      for (const { request } of requests) state.open.delete(request);
    }
  }
  watch(session, state);
}

/**
 * While requests wait for the app and no poll of it waits, the app must show up within
 * `absentMs` (any exchange does): else what waits for it fails.
 */
function watch(session: string, state: SessionState): void {
  clearTimeout(state.absent);
  state.absent = undefined;
  if (state.polls.length > 0 || (state.queue.length === 0 && state.open.size === 0)) return;
  state.absent = setTimeout(() => {
    state.absent = undefined;
    if (state.polls.length > 0) return;
    const message = `the app has not been heard from for ${data.absentMs} ms (is its client still running, and its thread free?)`;
    failAll(session, state, message);
    // Promises of its async functions will not settle either.
    toMain({ t: 'gone', session, message });
  }, data.absentMs);
}

function onCommand(command: RelayCommand): void {
  if (command.t === 'secret') {
    authorized = credentialCheck(command.secret);
    return;
  }
  const { session } = command;
  if (command.t === 'abandon') {
    const state = sessions.get(session);
    if (!state) return;
    state.open.delete(command.request);
    state.queue = state.queue.filter((r) => r.request !== command.request);
    return;
  }
  if (command.t === 'dropped') {
    // A session that ended forgot its callbacks already; one the app left may come back for them.
    if (closed.has(session)) return;
    const state = stateOf(session);
    if (state.closed) return;
    state.dropped.push(...command.items);
    deliver(session, state);
    return;
  }
  const state = stateOf(session);
  if (state.closed || state.gone) {
    const message = state.closed
      ? "the app's session has ended"
      : 'the app went away (its connection for callbacks closed)';
    toMain({ t: 'failure', session, request: command.request, message });
    return;
  }
  state.queue.push({ request: command.request, callback: command.callback, args: command.args });
  deliver(session, state);
}

function poll(call: GrpcServerCall) {
  if (!authorized(call.headers)) {
    return call.fail(grpcStatusFromCode(Code.UNAUTHENTICATED), UNAUTHENTICATED_MESSAGE);
  }
  let parsed: ReturnType<typeof parseCallbacksRequest>;
  try {
    const { payload } = decodeMessage(PayloadSpec, call.request);
    parsed = parseCallbacksRequest(decode(payload as Buffer));
  } catch (error) {
    const e = SpliceError.from(error, Code.INVALID_ARGUMENT);
    return call.fail(grpcStatusFromCode(e.code), e.message);
  }
  const { session, op } = parsed;
  const state = stateOf(session);
  state.gone = false;
  // A newer exchange ends the waiting ones: the app wants its answers through, or to stop waiting.
  for (const parked of state.polls.splice(0)) {
    clearTimeout(parked.timer);
    respond(parked.call, []);
  }
  clearTimeout(state.absent);
  state.absent = undefined;
  for (const { request, answer } of op.answers) {
    state.open.delete(request);
    toMain({ t: 'answer', session, request, answer });
  }
  if (op.released.length > 0) toMain({ t: 'released', session, ids: op.released });
  if (op.close) {
    state.closed = true;
    failAll(session, state, "the app's session has ended");
    toMain({
      t: 'closed',
      session,
      message: "the app's session has ended: its callbacks can no longer be called",
    });
    // The main thread remembers the end (its stubs refuse at once); here only that it ended, so
    // that an exchange of it still on its way (sent before the close) does not wait.
    sessions.delete(session);
    remember(session);
    return respond(call, []);
  }
  if (closed.has(session)) {
    sessions.delete(session);
    return respond(call, []);
  }
  const wait = Math.min(op.wait, Math.max(0, call.deadline - Date.now() - 100));
  if (state.queue.length > 0 || state.dropped.length > 0 || wait === 0) {
    respond(call, take(state), state);
    // An exchange that waits for nothing: the app is alive now; it must come back for the rest.
    return watch(session, state);
  }
  const parked: Poll = {
    call,
    timer: setTimeout(() => {
      state.polls = state.polls.filter((p) => p !== parked);
      respond(call, []);
      watch(session, state);
    }, wait),
  };
  state.polls.push(parked);
  watch(session, state);
  call.onCancel(() => {
    clearTimeout(parked.timer);
    state.polls = state.polls.filter((p) => p !== parked);
    if (state.polls.length > 0 || state.closed) return watch(session, state);
    // The app's last waiting poll went away: nothing will answer what waits for it.
    state.gone = true;
    const message = 'the app went away (its connection for callbacks closed)';
    failAll(session, state, message);
    toMain({ t: 'gone', session, message });
  });
}

async function start(): Promise<void> {
  const server = createGrpcServer({
    maxMessageBytes: data.maxMessageBytes,
    methods: { [INVOKE_PATH]: poll },
  });
  const port = await server.listen(data.host, data.port);
  data.commands.on('message', onCommand);
  parentPort?.postMessage({ t: 'listening', port });
}

start().catch((error: unknown) =>
  parentPort?.postMessage({ t: 'failed', message: error instanceof Error ? error.message : String(error) }),
);
