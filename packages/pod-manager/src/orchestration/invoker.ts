/**
 * Forwards invocation payloads to module-servers, as opaque bytes, with a deadline. Per server
 * endpoint: a lean HTTP/2 gRPC channel for Invoke and InvokeBatch (the hot path) and a grpc-js client for Stats,
 * both dropped when the endpoint goes away.
 */
import {
  type BatchAnswer,
  createInvokeChannel,
  createModuleClient,
  type InvokeAnswer,
  type InvokeChannel,
  type ModuleClient,
  type ServerStats,
} from '@splice-orc/protocol';

/** Options of {@link Invoker}. */
export interface InvokerOptions {
  maxPayloadBytes: number;
}

interface Connection {
  secret: string;
  channel: InvokeChannel;
  client?: ModuleClient;
}

/** A server to reach: where it listens and the credential it wants. */
export interface Target {
  endpoint: string;
  secret: string;
}

/** The pod-manager's connections to module-servers. */
export class Invoker {
  readonly #connections = new Map<string, Connection>();
  readonly #options: InvokerOptions;

  constructor(options: InvokerOptions) {
    this.#options = options;
  }

  /** Sends a payload to a server; rejects with a SpliceError. */
  invoke(
    target: Target,
    payload: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<InvokeAnswer> {
    return this.#connection(target).channel.invoke(payload, options);
  }

  /** Sends an encoded InvokeBatchRequest to a server; answers reach `onAnswer` as they arrive. */
  invokeBatch(
    target: Target,
    request: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
    onAnswer: (answer: BatchAnswer) => void,
  ): Promise<void> {
    return this.#connection(target).channel.invokeBatch(request, options, onAnswer);
  }

  /** Asks a server what it holds. */
  stats(target: Target, options: { timeoutMs: number }): Promise<ServerStats> {
    const connection = this.#connection(target);
    connection.client ??= createModuleClient(target.endpoint, { secret: target.secret });
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

  #connection({ endpoint, secret }: Target): Connection {
    let connection = this.#connections.get(endpoint);
    // A new server on a reused address has a secret of its own: the old connection is for the old one.
    if (connection && connection.secret !== secret) {
      this.drop(endpoint);
      connection = undefined;
    }
    if (!connection) {
      connection = {
        secret,
        channel: createInvokeChannel(endpoint, { maxMessageBytes: this.#options.maxPayloadBytes, secret }),
      };
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }
}
