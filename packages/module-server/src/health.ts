/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check and Watch) for a module-server.
 * It needs no credential, so that Kubernetes probes and grpc-health-probe work as they are.
 */
import * as grpc from '@grpc/grpc-js';
import { healthServiceDefinition, SERVING_STATUSES, type ServingStatus } from '@splice-orc/protocol';

type Request = { service: string };
type Response = { status: number };

/** Serving statuses by service name ('' is the server as a whole). */
export class Health {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Set<{ service: string; call: grpc.ServerWritableStream<Request, Response> }>();

  constructor(initial: Record<string, ServingStatus>) {
    for (const [service, status] of Object.entries(initial)) this.#statuses.set(service, status);
  }

  /** Sets a service's status and tells its watchers. */
  setStatus(service: string, status: ServingStatus): void {
    this.#statuses.set(service, status);
    for (const w of this.#watchers) if (w.service === service) w.call.write(response(status));
  }

  /** Ends every Watch (at shutdown, so that the server can stop). */
  endWatches(): void {
    for (const w of this.#watchers) w.call.end();
    this.#watchers.clear();
  }

  addToServer(server: grpc.Server): void {
    server.addService(healthServiceDefinition(), {
      Check: (call: grpc.ServerUnaryCall<Request, Response>, callback: grpc.sendUnaryData<Response>) => {
        const status = this.#statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
        } else callback(null, response(status));
      },
      Watch: (call: grpc.ServerWritableStream<Request, Response>) => {
        const watcher = { service: call.request.service, call };
        this.#watchers.add(watcher);
        call.write(response(this.#statuses.get(watcher.service) ?? 'SERVICE_UNKNOWN'));
        call.on('cancelled', () => this.#watchers.delete(watcher));
      },
    });
  }
}

function response(status: ServingStatus): Response {
  return { status: SERVING_STATUSES.indexOf(status) };
}
