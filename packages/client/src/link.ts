/**
 * Where an encoded program runs: a link takes it to its module and brings the encoded answer back.
 * Two implementations, chosen per call by the placement (cf. tRPC's links, Cap'n Web's hooks): the
 * pod-manager over HTTP (http-link.ts) and the module imported into this process (local-link.ts).
 */

/** Options of one call over a link. */
export interface LinkCallOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** The module-server instance holding the references the program uses. */
  route?: string | undefined;
}

/** A way to run programs of a module. */
export interface Link {
  /** Runs an encoded program; resolves with the encoded answer or rejects with a SpliceError. */
  invoke(module: string, body: Uint8Array, options: LinkCallOptions): Promise<Uint8Array>;
}

/** Calls a link reports, for the placement policy's statistics. */
export type CallRecorder = (module: string, where: 'local' | 'remote', ms: number) => void;
