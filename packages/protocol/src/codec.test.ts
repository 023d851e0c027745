import { expect, describe as group, it } from 'vitest';
import { checkDepth, decode, encode, MAX_DEPTH, RemoteRef, Slot } from './codec.js';
import { SpliceError } from './errors.js';

/** Each value must come back equal and of the same type (capnweb's SERIALIZE_TEST_CASES). */
const roundTrips: Array<[string, unknown]> = [
  ['null', null],
  ['undefined', undefined],
  ['true', true],
  ['false', false],
  ['a small integer', 42],
  ['a negative integer', -7],
  ['a large integer', 2 ** 53 - 1],
  ['a float', Math.PI],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
  ['negative zero', -0],
  ['negative zero inside an array and an object', [-0, { z: -0 }, new Map([['k', -0]])]],
  ['a small bigint', 5n],
  ['a negative bigint', -12345678901234567890n],
  ['a bigint past 64 bits', 2n ** 100n + 1n],
  ['a string', 'héllo ✓'],
  ['an empty string', ''],
  ['a Date', new Date('2026-11-22T10:00:00.123Z')],
  ['a Uint8Array', new Uint8Array([0, 1, 255])],
  ['a Buffer', Buffer.from('bytes')],
  ['an Int8Array', new Int8Array([-128, 127])],
  ['a Uint8ClampedArray', new Uint8ClampedArray([0, 200, 255])],
  ['an Int16Array', new Int16Array([-30000, 300])],
  ['a Uint16Array', new Uint16Array([65535, 256])],
  ['an Int32Array', new Int32Array([-2147483648, 70000])],
  ['a Uint32Array', new Uint32Array([4294967295, 70000])],
  ['a Float32Array', new Float32Array([1.5, -300.25, 1e30])],
  ['a Float64Array', new Float64Array([1.5, 300.25, -1e300, Number.MIN_VALUE])],
  ['a BigInt64Array', new BigInt64Array([-(2n ** 63n), 2n ** 40n])],
  ['a BigUint64Array', new BigUint64Array([2n ** 64n - 1n, 300n])],
  ['a typed array view into a larger buffer', new Float64Array(new ArrayBuffer(32), 8, 2).fill(300.5)],
  ['an array', [1, 'two', null, undefined, [3]]],
  ['a plain object', { a: 1, b: 'x', c: { d: [true] } }],
  [
    'a Map with mixed keys',
    new Map<unknown, unknown>([
      [1, 'one'],
      ['k', { v: 2n }],
      [true, [1]],
    ]),
  ],
  ['a Set', new Set([1, 'x', 3n])],
  ['nesting of all kinds', { m: new Map([['s', new Set([new Date(0)])]]), t: [new Int16Array([-300])] }],
  ['a RegExp', /a+(b)?/gi],
  ['a RegExp with every flag but v', /^x\d$/dgimsuy],
  // biome-ignore lint/complexity/useRegexLiterals: a v-flag literal needs TypeScript's es2024 target
  ['a RegExp with the v flag', new RegExp('[\\p{L}--[a-z]]', 'v')],
  ['an empty RegExp', /(?:)/],
  ['a RegExp inside an object', { pattern: /\//m }],
  ['a remote reference', new RemoteRef('srv-1', 7, 'object', 'Matrix')],
  ['a slot', new Slot(3)],
];

group('codec', () => {
  for (const [name, value] of roundTrips) {
    it(`round-trips ${name}`, () => {
      const back = decode(encode(value));
      expect(back).toStrictEqual(value);
      if (value !== null && typeof value === 'object') {
        expect(Object.getPrototypeOf(back)?.constructor).toBe(Object.getPrototypeOf(value)?.constructor);
      }
    });
  }

  it('writes negative zero as a float64, not as the integer 0 msgpackr would write', () => {
    expect(Buffer.from(encode(-0)).toString('hex')).toBe('cb8000000000000000');
    expect(Buffer.from(encode(0)).toString('hex')).toBe('00');
  });

  it('keeps a small bigint a bigint, not a number', () => {
    expect(typeof decode(encode(5n))).toBe('bigint');
  });

  it('round-trips an error with name, message, stack, code and cause', () => {
    const cause = new RangeError('inner');
    const error = Object.assign(new TypeError('outer', { cause }), { code: 'E_BAD' });
    const back = decode(encode(error)) as TypeError & { code: string };
    expect(back).toBeInstanceOf(TypeError);
    expect(back.message).toBe('outer');
    expect(back.code).toBe('E_BAD');
    expect(back.stack).toBe(error.stack);
    expect(back.cause).toBeInstanceOf(RangeError);
    expect((back.cause as Error).message).toBe('inner');
  });

  it('keeps a custom error name', () => {
    class ValidationError extends Error {
      override name = 'ValidationError';
    }
    const back = decode(encode(new ValidationError('no'))) as Error;
    expect(back.name).toBe('ValidationError');
    expect(back.message).toBe('no');
  });

  it('hands non-plain values to exportRef', () => {
    class Matrix {}
    const seen: object[] = [];
    const bytes = encode([new Matrix(), () => 1], {
      exportRef: (v) => {
        seen.push(v);
        return new RemoteRef('s', seen.length, 'object', 'x');
      },
    });
    expect(seen).toHaveLength(2);
    expect(decode(bytes)).toStrictEqual([
      new RemoteRef('s', 1, 'object', 'x'),
      new RemoteRef('s', 2, 'object', 'x'),
    ]);
  });

  it('sends a RegExp by value (source and flags, as structured clone does), not to exportRef', () => {
    const exportRef = () => {
      throw new Error('a RegExp is not exported');
    };
    const back = decode(encode({ r: /x+/y }, { exportRef })) as { r: RegExp };
    expect(back.r).toBeInstanceOf(RegExp);
    expect([back.r.source, back.r.flags, back.r.lastIndex]).toStrictEqual(['x+', 'y', 0]);
  });

  it('rejects a RegExp whose source or flags are not what they must be', () => {
    // A RegExp is d4 06 00 followed by [source, flags].
    const regexp = (fields: number[]) => Buffer.from([0xd4, 0x06, 0x00, ...fields]);
    const a = [0xa1, 0x61];
    for (const bytes of [
      regexp([0x92, ...a, 0xa2, 0x67, 0x67]), // flags "gg"
      regexp([0x92, ...a, 0xa1, 0x7a]), // flag "z"
      regexp([0x92, 0xa1, 0x28, 0xa0]), // source "(" does not compile
      regexp([0x91, ...a]), // no flags
      regexp([0x93, ...a, 0xa0, 0xa0]), // a third field
      regexp([0x92, ...a, 0x01]), // flags not a string
      regexp(a), // not an array
    ]) {
      expect(() => decode(bytes)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('refuses non-plain values when no exportRef is given', () => {
    expect(() => encode({ f: () => 1 })).toThrow(SpliceError);
    expect(() => encode(new (class Foo {})())).toThrow(/instance of Foo/);
  });

  it('refuses cyclic and too deeply nested values with INVALID_ARGUMENT', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encode(cyclic)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    let deep: unknown[] = [];
    for (let i = 0; i < 1000; i++) deep = [deep];
    expect(() => encode(deep)).toThrow(/deeper than/);
  });

  it('sends an object without prototype as a plain object', () => {
    expect(decode(encode(Object.assign(Object.create(null), { x: 1 })))).toStrictEqual({ x: 1 });
  });

  it('sends a value shared twice (not a cycle) twice', () => {
    const shared = { x: 1 };
    expect(decode(encode([shared, shared]))).toStrictEqual([{ x: 1 }, { x: 1 }]);
  });

  it('passes decoded references through importRef', () => {
    const bytes = encode({ r: new RemoteRef('s', 9, 'function', 'f') });
    expect(decode(bytes, { importRef: (ref) => `proxy-${ref.id}` })).toStrictEqual({ r: 'proxy-9' });
  });

  it('rejects a slot or a reference whose fields are not what they must be', () => {
    // An extension value is its header followed by the packed value: a slot is d4 05 00 <index>.
    const slot = Buffer.from(encode(new Slot(7)));
    expect(slot.subarray(0, 3)).toStrictEqual(Buffer.from([0xd4, 0x05, 0x00]));
    const slotNamedPush = Buffer.from([0xd4, 0x05, 0x00, 0xa4, ...Buffer.from('push')]);
    expect(() => decode(slotNamedPush)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const refWithStringId = Buffer.from([
      0xd4,
      0x04,
      0x00,
      0x94,
      0xa1,
      0x73,
      0xa1,
      0x31,
      0xa6,
      ...Buffer.from('object'),
      0xa0,
    ]);
    expect(() => decode(refWithStringId)).toThrow(/malformed remote reference/);
  });

  /** Extension payloads of the wrong shape, and msgpackr's own extension types (hex). */
  const refused: Array<[string, string]> = [
    ['a Set of something other than an array', 'd47300a3616263'],
    ['a Set in a two-byte extension header', 'd573000091 01'],
    ['a Map whose flat entry list has an odd length', 'd4020093010203'],
    ['a Map whose entries are not an array', 'd40200a3616263'],
    ['an error whose fields are not a map', 'd4030001'],
    ['a bigint that is not hexadecimal', 'd40100a430786666'],
    ['a bigint with trailing white space', 'd40100a366660a'],
    ['a bigint that is only a sign', 'd40100a12d'],
    ['a reference with three fields', 'd4040093a17301a66f626a656374'],
    ['a reference with a label that is not a string', 'd4040094a17301a66f626a65637401'],
    ["msgpackr's RegExp extension", 'd4780092a161a167'],
    ["msgpackr's error extension", 'd4650093a54572726f72a16dc0'],
    ["msgpackr's bigint extension", 'd44200'],
    ["msgpackr's structured-clone pointer", 'd6700000000001'],
  ];
  for (const [name, hex] of refused) {
    it(`refuses ${name}`, () => {
      expect(() => decode(Buffer.from(hex.replace(/ /g, ''), 'hex'))).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    });
  }

  it('rejects bytes that are not msgpack with INVALID_ARGUMENT', () => {
    expect(() => decode(new Uint8Array([0x92, 0x01]))).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('does not let a __proto__ key change the decoded prototype', () => {
    const bytes = encode(JSON.parse('{"__proto__": {"polluted": true}}'));
    const back = decode(bytes) as Record<string, unknown>;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(back.polluted).toBeUndefined();
  });
});

group('depth limit', () => {
  const nested = (levels: number): unknown => {
    let value: unknown = [];
    for (let i = 1; i < levels; i++) value = [value];
    return value;
  };

  it('round-trips a value exactly at the limit and refuses one level more, both ways', () => {
    expect(decode(encode(nested(MAX_DEPTH)))).toEqual(nested(MAX_DEPTH));
    expect(() => encode(nested(MAX_DEPTH + 1))).toThrow(/nests deeper than 256 levels/);
    // Bytes made by hand: 257 nested fixarrays.
    const bytes = Buffer.concat([Buffer.alloc(MAX_DEPTH, 0x91), Buffer.from([0x90])]);
    expect(() => decode(bytes)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', details: { limit: 'depth', max: 256 } }),
    );
  });

  it('refuses 100 000 levels with the same error, not a stack overflow', () => {
    const bytes = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0x90])]);
    expect(() => decode(bytes)).toThrow(/nests deeper than 256 levels/);
  });

  it('counts containers only: a reference, slot, RegExp or ArrayBuffer inside the last level is a leaf', () => {
    for (const leaf of [new RemoteRef('s', 1, 'object', 'x'), new Slot(0), /x/, new ArrayBuffer(1)]) {
      let value: unknown = [leaf];
      for (let i = 1; i < MAX_DEPTH; i++) value = [value];
      expect(decode(encode(value))).toStrictEqual(value);
    }
  });

  it('counts Maps, Sets and objects as levels too', () => {
    let value: unknown = 1;
    for (let i = 0; i < MAX_DEPTH; i++)
      value = i % 3 === 0 ? new Map([['k', value]]) : i % 3 === 1 ? new Set([value]) : { k: value };
    expect(() => checkDepth(value)).not.toThrow();
    expect(() => checkDepth([value])).toThrow(/nests deeper/);
  });
});
