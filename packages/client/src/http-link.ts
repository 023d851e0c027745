/**
 * Runs programs through the pod-manager: `POST /modules/:name/invoke` with the msgpack program.
 * Every answer says where the module's new calls should run now, which the placement follows.
 */
import { Rest } from '@splice-orc/protocol';
import type { CallRecorder, Link, LinkCallOptions } from './link.js';
import type { Transport } from './transport.js';

/** Options of {@link createHttpLink}. */
export interface HttpLinkOptions {
  transport: Transport;
  record: CallRecorder;
  /** Follows the placement an answer carries. */
  follow: (module: string, placement: string | undefined) => void;
}

/** The link to the pod-manager. */
export function createHttpLink({ transport, record, follow }: HttpLinkOptions): Link {
  return {
    async invoke(module: string, body: Uint8Array, options: LinkCallOptions): Promise<Uint8Array> {
      const started = performance.now();
      const answer = await transport.invoke(Rest.Paths.invoke(module), body, options);
      follow(module, answer.placement);
      // A cold start is not what running remotely costs per call: the policy sees it without.
      record(module, 'remote', performance.now() - started - (answer.coldStartMs ?? 0));
      return answer.payload;
    },
  };
}
