/**
 * The batch vectors of `proto/vectors/batch.json` (the Python module-server reads the same file):
 * InvokeBatchRequest and InvokeBatchAnswer messages decode to their fields and, when canonical,
 * encode to their bytes; an HTTP batch answer reads as its frames.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  countBatchPrograms,
  FrameReader,
  readBatchAnswer,
  splitBatch,
  TRAILER_FLAG,
  withBatchIndex,
} from './batch.js';
import { encodeBatchRequest } from './proto.js';
import { BatchAnswerSpec, BatchRequestSpec, decodeMessage, encodeMessage } from './protobuf.js';

interface Vector {
  name: string;
  kind: 'request' | 'answer' | 'http';
  canonical: boolean;
  hex: string;
  fields?: Record<string, unknown>;
}

const vectors = (
  JSON.parse(readFileSync(new URL('../../../proto/vectors/batch.json', import.meta.url), 'utf8')) as {
    vectors: Vector[];
  }
).vectors;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const of = (kind: Vector['kind']) => vectors.filter((v) => v.kind === kind).map((v) => [v.name, v] as const);

describe('batch vectors', () => {
  it('hold every kind of case', () => {
    expect(of('request').length).toBeGreaterThanOrEqual(3);
    expect(of('answer').length).toBeGreaterThanOrEqual(3);
    expect(of('http').length).toBeGreaterThanOrEqual(2);
  });

  it.each(of('request'))('request: %s', (_name, v) => {
    const bytes = Buffer.from(v.hex, 'hex');
    const message = decodeMessage(BatchRequestSpec, bytes) as { payloads: Buffer[]; timeouts_ms: number[] };
    const fields = v.fields as { payloads: string[]; timeouts_ms: number[] };
    expect({ payloads: message.payloads.map(hex), timeouts_ms: message.timeouts_ms }).toEqual(fields);
    expect(countBatchPrograms(bytes)).toBe(fields.payloads.length);
    if (v.canonical) {
      const payloads = fields.payloads.map((p) => Buffer.from(p, 'hex'));
      expect(hex(encodeBatchRequest({ payloads, timeouts_ms: fields.timeouts_ms }))).toBe(v.hex);
    }
  });

  it.each(of('answer'))('answer: %s', (_name, v) => {
    const answer = readBatchAnswer(Buffer.from(v.hex, 'hex'));
    expect({ ...answer, payload: hex(answer.payload) }).toEqual(v.fields);
    const fields = v.fields as { payload: string };
    const encoded = encodeMessage(BatchAnswerSpec, {
      ...fields,
      payload: Buffer.from(fields.payload, 'hex'),
    });
    expect(hex(encoded)).toBe(v.hex);
  });

  it.each(of('http'))('http: %s', (_name, v) => {
    const bytes = Buffer.from(v.hex, 'hex');
    // Any split of the stream into chunks gives the same frames.
    for (const size of [1, 3, bytes.length]) {
      const reader = new FrameReader(1 << 20);
      const frames = [];
      for (let at = 0; at < bytes.length; at += size)
        frames.push(...reader.push(bytes.subarray(at, at + size)));
      expect(reader.pendingBytes).toBe(0);
      const last = frames.at(-1);
      expect(last?.flag).toBe(TRAILER_FLAG);
      expect(JSON.parse(String(last?.body))).toHaveProperty('ok');
      for (const frame of frames.slice(0, -1))
        expect(readBatchAnswer(frame.body).index).toBeGreaterThanOrEqual(0);
    }
  });

  it('splits a batch over replicas, each part keeping its programs and deadlines', () => {
    const payloads = [1, 2, 3, 4, 5].map((n) => Buffer.from([n]));
    const parts = splitBatch(encodeBatchRequest({ payloads, timeouts_ms: [10, 20, 30] }), 2);
    expect(parts.map((p) => p.indices)).toEqual([
      [0, 1, 2],
      [3, 4],
    ]);
    const second = decodeMessage(BatchRequestSpec, parts[1]?.request as Buffer);
    expect(second).toEqual({ payloads: [Buffer.from([4]), Buffer.from([5])], timeouts_ms: [0, 0] });
    const answer = encodeMessage(BatchAnswerSpec, { index: 1, payload: Buffer.from([7]), threw: true });
    expect(readBatchAnswer(withBatchIndex(answer, 4))).toMatchObject({ index: 4, threw: true });
    expect(readBatchAnswer(withBatchIndex(answer, 0)).index).toBe(0);
  });

  it('refuses a frame larger than the reader allows', () => {
    const reader = new FrameReader(4);
    expect(() => reader.push(Buffer.from([0, 0, 0, 0, 5, 1, 2, 3, 4, 5]))).toThrow(/larger than the limit/);
  });
});
