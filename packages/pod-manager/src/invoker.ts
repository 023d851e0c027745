/**
 * Forwards invocation payloads to module-servers, as opaque bytes, with a deadline. Per server
 * endpoint: a lean HTTP/2 gRPC channel for Invoke (the hot path) and a grpc-js client for Stats,
 * both dropped when the endpoint goes away.
 */
import {
  Code,
  createInvokeChannel,
  createModuleClient,
  type InvokeAnswer,
  type InvokeChannel,
  type ModuleClient,
  type ServerStats,
  SpliceError,
} from '@splice-orc/protocol';

/** Options of {@link Invoker}. */
export interface InvokerOptions {
  maxPayloadBytes: number;
}

interface Connection {
  channel: InvokeChannel;
  client?: ModuleClient;
}

/** The pod-manager's connections to module-servers. */
export class Invoker {
  readonly #connections = new Map<string, Connection>();
  readonly #options: InvokerOptions;

  constructor(options: InvokerOptions) {
    this.#options = options;
  }

  /** Sends a payload to the server at `endpoint`; rejects with a SpliceError. */
  invoke(
    endpoint: string,
    payload: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<InvokeAnswer> {
    return this.#connection(endpoint).channel.invoke(payload, options);
  }

  /** Asks the server at `endpoint` what it holds. */
  stats(endpoint: string, options: { timeoutMs: number }): Promise<ServerStats> {
    const connection = this.#connection(endpoint);
    connection.client ??= createModuleClient(endpoint);
    return connection.client.stats(options);
  }

  /** Closes the connections to an endpoint that is no longer served. */
  drop(endpoint: string): void {
    const connection = this.#connections.get(endpoint);
    connection?.channel.close();
    connection?.client?.close();
    this.#connections.delete(endpoint);
  }

  close(): void {
    for (const endpoint of [...this.#connections.keys()]) this.drop(endpoint);
  }

  #connection(endpoint: string): Connection {
    let connection = this.#connections.get(endpoint);
    if (!connection) {
      connection = {
        channel: createInvokeChannel(endpoint, { maxMessageBytes: this.#options.maxPayloadBytes }),
      };
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }
}

/**
 * True when the call cannot have reached the server (no connection was made, or the server
 * refused the stream), so sending it again elsewhere runs it at most once.
 */
export function neverDelivered(error: unknown): boolean {
  return (
    error instanceof SpliceError &&
    error.code === Code.UNAVAILABLE &&
    /No connection established/.test(error.message)
  );
}
