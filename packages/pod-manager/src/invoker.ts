/**
 * Forwards invocation payloads to module-servers over gRPC, as opaque bytes, with a deadline. One
 * client (one HTTP/2 connection) per server endpoint, dropped when the endpoint goes away.
 */
import {
  Code,
  createModuleClient,
  type ModuleClient,
  type ServerStats,
  SpliceError,
} from '@splice-orc/protocol';

/** Options of {@link Invoker}. */
export interface InvokerOptions {
  maxPayloadBytes: number;
}

/** The gRPC clients of the pod-manager. */
export class Invoker {
  readonly #clients = new Map<string, ModuleClient>();
  readonly #options: InvokerOptions;

  constructor(options: InvokerOptions) {
    this.#options = options;
  }

  /** Sends a payload to the server at `endpoint`; rejects with a SpliceError. */
  invoke(
    endpoint: string,
    payload: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<Buffer> {
    return this.#client(endpoint).invoke(payload, options);
  }

  /** Asks the server at `endpoint` what it holds. */
  stats(endpoint: string, options: { timeoutMs: number }): Promise<ServerStats> {
    return this.#client(endpoint).stats(options);
  }

  /** Closes the client of an endpoint that is no longer served. */
  drop(endpoint: string): void {
    this.#clients.get(endpoint)?.close();
    this.#clients.delete(endpoint);
  }

  close(): void {
    for (const endpoint of [...this.#clients.keys()]) this.drop(endpoint);
  }

  #client(endpoint: string): ModuleClient {
    let client = this.#clients.get(endpoint);
    if (!client) {
      client = createModuleClient(endpoint, { maxMessageBytes: this.#options.maxPayloadBytes });
      this.#clients.set(endpoint, client);
    }
    return client;
  }
}

/**
 * True when the call cannot have reached the server (no connection was made), so sending it again
 * elsewhere runs it at most once.
 */
export function neverDelivered(error: unknown): boolean {
  return (
    error instanceof SpliceError &&
    error.code === Code.UNAVAILABLE &&
    /No connection established|ECONNREFUSED|connect ECONN/i.test(error.message)
  );
}
