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
  /** Send calls made in one turn of the event loop to a server as one InvokeBatch. */
  coalesce?: boolean;
}

interface Connection {
  secret: string;
  channel: InvokeChannel;
  client?: ModuleClient;
}

/** Suffix of the key of an endpoint's connection for callback exchanges. */
const EXCHANGES = '#callbacks';

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

  /**
   * Sends a `callbacks` program (INVOKE.md 3.7) to a server's callback endpoint, never coalesced
   * with other calls: a long poll is a call of its own, and its cancel must reach the server.
   */
  exchange(
    target: Target,
    payload: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<InvokeAnswer> {
    return this.#connection(target, false).channel.invoke(payload, options);
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
    this.#dropKey(endpoint);
    this.#dropKey(`${endpoint}${EXCHANGES}`);
  }

  close(): void {
    for (const key of [...this.#connections.keys()]) this.#dropKey(key);
  }

  #dropKey(key: string): void {
    const connection = this.#connections.get(key);
    connection?.channel.close();
    connection?.client?.close();
    this.#connections.delete(key);
  }

  #connection({ endpoint, secret }: Target, coalesce = this.#options.coalesce): Connection {
    // Callback exchanges have connections of their own, which never coalesce.
    const key = coalesce === false && this.#options.coalesce !== false ? `${endpoint}${EXCHANGES}` : endpoint;
    let connection = this.#connections.get(key);
    // A new server on a reused address has a secret of its own: the old connection is for the old one.
    if (connection && connection.secret !== secret) {
      this.#dropKey(key);
      connection = undefined;
    }
    if (!connection) {
      connection = {
        secret,
        channel: createInvokeChannel(endpoint, {
          maxMessageBytes: this.#options.maxPayloadBytes,
          secret,
          coalesce,
        }),
      };
      this.#connections.set(key, connection);
    }
    return connection;
  }
}
