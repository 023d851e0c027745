/** The credential every Invoke and Stats call carries (INVOKE.md 2.2), checked in constant time. */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http2';
import { CREDENTIAL_METADATA } from '@splice-orc/protocol/wire';

/** Checks a call's credential against the secret, in constant time. */
export function credentialCheck(secret: string): (headers: IncomingHttpHeaders) => boolean {
  const expected = Buffer.from(`Bearer ${secret}`);
  return (headers) => {
    const given = headers[CREDENTIAL_METADATA];
    const bytes = Buffer.from(typeof given === 'string' ? given : '');
    return bytes.length === expected.length && timingSafeEqual(bytes, expected);
  };
}

/** What a call without the right credential is told. */
export const UNAUTHENTICATED_MESSAGE =
  'missing or wrong credential: only the pod-manager that started this module-server may call it';
