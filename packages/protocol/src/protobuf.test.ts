/**
 * The hand-written protobuf codec against protobufjs loading the .proto files of `proto/` (through
 * @grpc/proto-loader, as grpc-js users do): the .proto files are the contract, and every message
 * the codec writes must be what they define, byte for byte, and read back the same.
 */
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { healthServiceDefinition, moduleServiceDefinition } from './proto.js';

const root = fileURLToPath(new URL('../../../proto/', import.meta.url));
const loaded = protoLoader.loadSync(['splice/v1/module.proto', 'grpc/health/v1/health.proto'], {
  includeDirs: [root],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: true,
});
const reference = (service: string) => loaded[service] as unknown as grpc.ServiceDefinition;

const cases: Array<{
  service: string;
  ours: grpc.ServiceDefinition;
  method: string;
  request: object;
  response: object;
}> = [
  {
    service: 'splice.v1.ModuleService',
    ours: moduleServiceDefinition(),
    method: 'Invoke',
    request: { payload: Buffer.from([0x82, 0xa1, 0x76, 0x01]) },
    response: { payload: Buffer.alloc(300, 7) },
  },
  {
    service: 'splice.v1.ModuleService',
    ours: moduleServiceDefinition(),
    method: 'InvokeBatch',
    request: {
      payloads: [Buffer.from([0x82, 0xa1, 0x76, 0x01]), Buffer.alloc(200, 3), Buffer.from([0xc0])],
      timeouts_ms: [1, 30_000, 2 ** 31],
    },
    response: { index: 2, payload: Buffer.alloc(130, 9), threw: true },
  },
  {
    service: 'splice.v1.ModuleService',
    ours: moduleServiceDefinition(),
    method: 'InvokeBatch',
    request: { payloads: [Buffer.from([0x90])] },
    response: { index: 1, status: 7, message: 'access to x is not allowed' },
  },
  {
    service: 'splice.v1.ModuleService',
    ours: moduleServiceDefinition(),
    method: 'Stats',
    request: {},
    response: {
      server_id: 'pod-7f9c',
      sessions: 3,
      objects: 70_000,
      in_flight: 9,
      calls: 2 ** 40 + 5,
      exports: ['add', 'default', 'répété'],
    },
  },
  {
    service: 'grpc.health.v1.Health',
    ours: healthServiceDefinition(),
    method: 'Check',
    request: { service: 'splice.v1.ModuleService' },
    response: { status: 2 },
  },
  {
    service: 'grpc.health.v1.Health',
    ours: healthServiceDefinition(),
    method: 'Watch',
    request: { service: 'x' },
    response: { status: 1 },
  },
];

describe('protobuf codec of the contract', () => {
  it.each(cases)('writes and reads $service/$method as the .proto defines it', (c) => {
    const ours = c.ours[c.method]!;
    const theirs = reference(c.service)[c.method]!;
    expect(ours.path).toBe(theirs.path);
    expect(ours.responseStream).toBe(theirs.responseStream);
    for (const [message, ser, de, refSer, refDe] of [
      [
        c.request,
        ours.requestSerialize,
        ours.requestDeserialize,
        theirs.requestSerialize,
        theirs.requestDeserialize,
      ],
      [
        c.response,
        ours.responseSerialize,
        ours.responseDeserialize,
        theirs.responseSerialize,
        theirs.responseDeserialize,
      ],
    ] as const) {
      const bytes = ser(message);
      expect(bytes.equals(refSer(message))).toBe(true);
      expect(de(bytes)).toEqual(refDe(bytes));
      expect(de(bytes)).toEqual(refDe(refSer(message)));
    }
  });

  it('leaves fields at their default out (proto3), which protobufjs reads back as defaults', () => {
    const ours = moduleServiceDefinition().Stats!;
    const theirs = reference('splice.v1.ModuleService').Stats!;
    const idle = { server_id: 'a', sessions: 0, objects: 0, in_flight: 0, calls: 0, exports: [] };
    const bytes = ours.responseSerialize(idle);
    expect(bytes.toString('hex')).toBe('0a0161');
    expect(theirs.responseDeserialize(bytes)).toEqual(idle);
    expect(ours.responseDeserialize(theirs.responseSerialize(idle))).toEqual(idle);
  });

  it('skips fields it does not know and reads absent ones as their defaults', () => {
    const stats = moduleServiceDefinition().Stats!;
    // field 9 (varint 1) and field 10 (bytes "ab") are unknown; server_id is absent.
    const bytes = Buffer.from([0x48, 0x01, 0x52, 0x02, 0x61, 0x62, 0x10, 0x04]);
    expect(stats.responseDeserialize(bytes)).toEqual({
      server_id: '',
      sessions: 4,
      objects: 0,
      in_flight: 0,
      calls: 0,
      exports: [],
    });
  });

  it('refuses a field that runs past the end of the message', () => {
    const invoke = moduleServiceDefinition().Invoke!;
    expect(() => invoke.requestDeserialize(Buffer.from([0x0a, 0x05, 0x01]))).toThrow(/runs past the message/);
  });
});
