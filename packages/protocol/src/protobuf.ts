/**
 * The protobuf encoding of the few messages of `proto/` (splice.v1 and grpc.health.v1), written
 * out by hand from the .proto files. Module-servers run with code generation from strings
 * disallowed (`--disallow-code-generation-from-strings`, so module code cannot compile what a
 * caller sends), and protobufjs, under @grpc/proto-loader, generates its codecs with `Function`.
 * The messages are flat (bytes, strings, varints), so a table per message is all it takes;
 * `protobuf.test.ts` checks every message against protobufjs loading the .proto files, which stay
 * the contract.
 */
import { SpliceError } from './errors.js';
import { Code } from './status.js';

/** The field kinds the contract uses (`repeated bytes`, and `repeated uint32`, packed as proto3 does). */
type FieldKind =
  | 'bytes'
  | 'string'
  | 'varint'
  | 'bool'
  | 'repeated-bytes'
  | 'repeated-string'
  | 'packed-varint';

/** One field of a message: its number, name and kind. */
export interface FieldSpec {
  readonly no: number;
  readonly name: string;
  readonly kind: FieldKind;
}

/** A message type: its fields in field-number order. */
export type MessageSpec = readonly FieldSpec[];

/** Decoded messages are plain objects; absent fields take their proto3 default (empty, 0, []). */
export type Message = Record<string, Buffer | string | number | boolean | Buffer[] | string[] | number[]>;

/** `splice.v1.InvokeRequest` and `InvokeResponse`: one bytes field. */
export const PayloadSpec: MessageSpec = [{ no: 1, name: 'payload', kind: 'bytes' }];
/** `splice.v1.StatsRequest`: empty. */
export const EmptySpec: MessageSpec = [];
/** `splice.v1.StatsResponse`. */
export const StatsSpec: MessageSpec = [
  { no: 1, name: 'server_id', kind: 'string' },
  { no: 2, name: 'sessions', kind: 'varint' },
  { no: 3, name: 'objects', kind: 'varint' },
  { no: 4, name: 'in_flight', kind: 'varint' },
  { no: 5, name: 'calls', kind: 'varint' },
  { no: 6, name: 'exports', kind: 'repeated-string' },
];
/** `splice.v1.InvokeBatchRequest`: programs, and each one's own deadline (ms; 0 = the call's). */
export const BatchRequestSpec: MessageSpec = [
  { no: 1, name: 'payloads', kind: 'repeated-bytes' },
  { no: 2, name: 'timeouts_ms', kind: 'packed-varint' },
];
/** `splice.v1.InvokeBatchAnswer`: one program's answer, streamed as it is ready. */
export const BatchAnswerSpec: MessageSpec = [
  { no: 1, name: 'index', kind: 'varint' },
  { no: 2, name: 'payload', kind: 'bytes' },
  { no: 3, name: 'threw', kind: 'bool' },
  { no: 4, name: 'status', kind: 'varint' },
  { no: 5, name: 'message', kind: 'string' },
];
/** `grpc.health.v1.HealthCheckRequest`. */
export const HealthRequestSpec: MessageSpec = [{ no: 1, name: 'service', kind: 'string' }];
/** `grpc.health.v1.HealthCheckResponse` (status is the ServingStatus enum's number). */
export const HealthResponseSpec: MessageSpec = [{ no: 1, name: 'status', kind: 'varint' }];

/** Encodes a message; fields at their default value are left out, as proto3 does. */
export function encodeMessage(spec: MessageSpec, message: Readonly<Record<string, unknown>>): Buffer {
  const parts: Buffer[] = [];
  for (const field of spec) {
    const value = message[field.name];
    if (field.kind === 'repeated-bytes' || field.kind === 'repeated-string') {
      for (const item of (value ?? []) as Array<Uint8Array | string>) {
        const bytes = typeof item === 'string' ? Buffer.from(item, 'utf8') : asBuffer(item);
        parts.push(varint((field.no << 3) | 2), varint(bytes.length), bytes);
      }
      continue;
    }
    if (field.kind === 'packed-varint') {
      const items = (value ?? []) as number[];
      if (items.length === 0) continue;
      const packed = Buffer.concat(items.map((n) => varint(n)));
      parts.push(varint((field.no << 3) | 2), varint(packed.length), packed);
      continue;
    }
    if (field.kind === 'varint' || field.kind === 'bool') {
      const n = Number(value ?? 0);
      if (n === 0) continue;
      parts.push(varint((field.no << 3) | 0), varint(n));
      continue;
    }
    const bytes =
      field.kind === 'string' ? Buffer.from(String(value ?? ''), 'utf8') : asBuffer(value as Uint8Array);
    if (bytes.length === 0) continue;
    parts.push(varint((field.no << 3) | 2), varint(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

/** Decodes a message; unknown fields are skipped, as protobuf requires. */
export function decodeMessage(spec: MessageSpec, bytes: Buffer): Message {
  const message: Message = {};
  for (const field of spec) message[field.name] = defaultOf(field.kind);
  const byNumber = new Map(spec.map((f) => [f.no, f]));
  let offset = 0;
  while (offset < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, offset);
    const field = byNumber.get(Math.floor(tag / 8));
    const wireType = tag & 7;
    if (wireType === 0) {
      const [value, next] = readVarint(bytes, afterTag);
      if (field?.kind === 'varint') message[field.name] = value;
      else if (field?.kind === 'bool') message[field.name] = value !== 0;
      // A repeated scalar may also come unpacked, one value per tag.
      else if (field?.kind === 'packed-varint') (message[field.name] as number[]).push(value);
      offset = next;
    } else if (wireType === 2) {
      const [length, start] = readVarint(bytes, afterTag);
      const end = start + length;
      if (end > bytes.length) throw malformed('a length-delimited field runs past the message');
      const slice = bytes.subarray(start, end);
      if (field?.kind === 'bytes') message[field.name] = slice;
      else if (field?.kind === 'repeated-bytes') (message[field.name] as Buffer[]).push(slice);
      else if (field?.kind === 'repeated-string')
        (message[field.name] as string[]).push(slice.toString('utf8'));
      else if (field?.kind === 'packed-varint') {
        const values = message[field.name] as number[];
        for (let at = 0; at < slice.length; ) {
          const [value, next] = readVarint(slice, at);
          values.push(value);
          at = next;
        }
      } else if (field?.kind === 'string') message[field.name] = slice.toString('utf8');
      offset = end;
    } else if (wireType === 1 || wireType === 5) {
      offset = afterTag + (wireType === 1 ? 8 : 4);
    } else {
      throw malformed(`unsupported protobuf wire type ${wireType}`);
    }
  }
  if (offset > bytes.length) throw malformed('the message is truncated');
  return message;
}

/** A varint's bytes (non-negative safe integers). */
export function varint(n: number): Buffer {
  const out: number[] = [];
  let rest = n;
  while (rest > 0x7f) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** Reads a varint at `offset`: its value and the offset after it. */
export function readVarint(buffer: Buffer, offset: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < offset + 10; i++) {
    const byte = buffer[i];
    if (byte === undefined) throw malformed('truncated varint');
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, i + 1];
    scale *= 0x80;
  }
  throw malformed('varint longer than 10 bytes');
}

function asBuffer(value: Uint8Array | undefined): Buffer {
  if (!value) return Buffer.alloc(0);
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function defaultOf(kind: FieldKind): Message[string] {
  if (kind === 'repeated-bytes' || kind === 'repeated-string' || kind === 'packed-varint') return [];
  if (kind === 'bytes') return Buffer.alloc(0);
  if (kind === 'bool') return false;
  return kind === 'string' ? '' : 0;
}

function malformed(why: string): SpliceError {
  return new SpliceError(Code.INTERNAL, `malformed protobuf message: ${why}`);
}
