/**
 * Auto-batching over HTTP (proto/INVOKE.md, section 10). A client sends several programs of one
 * module in one request: the body is an `InvokeBatchRequest` message (content type
 * {@link BATCH_TYPE}), which the pod-manager forwards to the module-server as it is. The answer
 * streams back as frames, each answer as soon as its program is done: a frame is a flag byte, a
 * 4-byte big-endian length and a body (gRPC's message framing). Flag 0 frames hold an
 * `InvokeBatchAnswer` message as the module-server wrote it; the last frame has flag
 * {@link TRAILER_FLAG} and holds the outcome of the whole batch as JSON ({@link BatchTrailer}).
 */
import { SpliceError } from './errors.js';
import type { BatchAnswerMessage } from './proto.js';
import { BatchAnswerSpec, BatchRequestSpec, decodeMessage, encodeMessage, varint } from './protobuf.js';
import { Code } from './status.js';

/** Content type of a batch request and of its streamed answer. */
export const BATCH_TYPE = 'application/x-splice-batch';

/** Most programs one batch may carry; the module-server refuses more. */
export const MAX_BATCH_PROGRAMS = 1024;

/** Flag of the frame that ends a batch answer. */
export const TRAILER_FLAG = 0x80;

/** The last frame: every program was answered, or the batch failed (the error body's shape). */
export type BatchTrailer =
  | { ok: true }
  | { ok: false; error: { code: string; status: string; message: string; safe_to_resend?: boolean } };

/** Frames a message: flag byte, length, body. */
export function frameMessage(body: Uint8Array, flag = 0): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = flag;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/** The trailer frame. */
export function trailerFrame(trailer: BatchTrailer): Buffer {
  return frameMessage(Buffer.from(JSON.stringify(trailer)), TRAILER_FLAG);
}

/**
 * How many programs an encoded `InvokeBatchRequest` holds; throws INVALID_ARGUMENT when it is not
 * one, holds none, holds more than {@link MAX_BATCH_PROGRAMS} or more deadlines than programs.
 */
export function countBatchPrograms(bytes: Buffer): number {
  let message: { payloads: Buffer[]; timeouts_ms: number[] };
  try {
    message = decodeMessage(BatchRequestSpec, bytes) as unknown as typeof message;
  } catch (error) {
    throw new SpliceError(Code.INVALID_ARGUMENT, `not an InvokeBatchRequest: ${(error as Error).message}`);
  }
  const count = message.payloads.length;
  if (count === 0) throw new SpliceError(Code.INVALID_ARGUMENT, 'a batch holds no program');
  if (count > MAX_BATCH_PROGRAMS) {
    throw new SpliceError(
      Code.INVALID_ARGUMENT,
      `a batch holds at most ${MAX_BATCH_PROGRAMS} programs, this one ${count}`,
    );
  }
  if (message.timeouts_ms.length > count) {
    throw new SpliceError(Code.INVALID_ARGUMENT, 'a batch holds more deadlines than programs');
  }
  return count;
}

/** Reads a byte stream as frames. */
export class FrameReader {
  #pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameBytes: number) {}

  /** Takes a chunk; returns the frames it completes. Throws on a frame larger than allowed. */
  push(chunk: Buffer): Array<{ flag: number; body: Buffer }> {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    const frames: Array<{ flag: number; body: Buffer }> = [];
    let at = 0;
    while (this.#pending.length - at >= 5) {
      const length = this.#pending.readUInt32BE(at + 1);
      if (length > this.maxFrameBytes) {
        throw new SpliceError(
          Code.RESOURCE_EXHAUSTED,
          `a batch answer of ${length} bytes is larger than the limit (${this.maxFrameBytes})`,
        );
      }
      if (this.#pending.length - at < 5 + length) break;
      frames.push({ flag: this.#pending[at] ?? 0, body: this.#pending.subarray(at + 5, at + 5 + length) });
      at += 5 + length;
    }
    this.#pending = this.#pending.subarray(at);
    return frames;
  }

  /** Bytes of a frame not yet complete. */
  get pendingBytes(): number {
    return this.#pending.length;
  }
}

/** Reads one `InvokeBatchAnswer`. */
export function readBatchAnswer(body: Buffer): BatchAnswerMessage {
  return decodeMessage(BatchAnswerSpec, body) as unknown as BatchAnswerMessage;
}

/**
 * Cuts an encoded `InvokeBatchRequest` into `parts` requests of consecutive programs (each with
 * its programs' deadlines); `indices` maps a part's program positions to the original ones.
 */
export function splitBatch(
  request: Uint8Array,
  parts: number,
): Array<{ request: Buffer; indices: number[] }> {
  const { payloads, timeouts_ms: timeouts } = decodeMessage(BatchRequestSpec, Buffer.from(request)) as {
    payloads: Buffer[];
    timeouts_ms: number[];
  };
  const size = Math.ceil(payloads.length / Math.max(1, parts));
  const out: Array<{ request: Buffer; indices: number[] }> = [];
  for (let first = 0; first < payloads.length; first += size) {
    const indices = payloads.slice(first, first + size).map((_p, i) => first + i);
    const sub = encodeMessage(BatchRequestSpec, {
      payloads: indices.map((i) => payloads[i]),
      timeouts_ms: indices.map((i) => timeouts[i] ?? 0),
    });
    out.push({ request: sub, indices });
  }
  return out;
}

/** An `InvokeBatchAnswer` message with another index: a later occurrence of a singular field wins. */
export function withBatchIndex(message: Buffer, index: number): Buffer {
  return Buffer.concat([message, Buffer.from([0x08]), varint(index)]);
}
