/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check and Watch) for a module-server.
 * It needs no credential, so that Kubernetes probes and grpc-health-probe work as they are.
 */
import {
  decodeMessage,
  encodeMessage,
  type GrpcHandler,
  type GrpcServerCall,
  HEALTH_SERVICE_NAME,
  HealthRequestSpec,
  HealthResponseSpec,
  SERVING_STATUSES,
  type ServingStatus,
} from '@splice-orc/protocol';

/** gRPC's NOT_FOUND. */
const NOT_FOUND = 5;
/** Most Watch streams open at once: each holds a stream until its caller goes. */
const MAX_WATCHERS = 64;
/** gRPC's RESOURCE_EXHAUSTED. */
const RESOURCE_EXHAUSTED = 8;

/** Serving statuses by service name ('' is the server as a whole). */
export class Health {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Set<{ service: string; call: GrpcServerCall }>();

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

  /** The service's methods, by path, for the server. */
  methods(): Record<string, GrpcHandler> {
    return {
      [`/${HEALTH_SERVICE_NAME}/Check`]: (call) => {
        const service = serviceOf(call);
        const status = this.#statuses.get(service);
        if (status === undefined) return call.fail(NOT_FOUND, `unknown service '${service}'`);
        call.write(response(status));
        call.end();
      },
      [`/${HEALTH_SERVICE_NAME}/Watch`]: (call) => {
        if (this.#watchers.size >= MAX_WATCHERS) {
          return call.fail(RESOURCE_EXHAUSTED, `at most ${MAX_WATCHERS} health watches at once`);
        }
        const watcher = { service: serviceOf(call), call };
        this.#watchers.add(watcher);
        call.write(response(this.#statuses.get(watcher.service) ?? 'SERVICE_UNKNOWN'));
        call.onCancel(() => this.#watchers.delete(watcher));
      },
    };
  }
}

function serviceOf(call: GrpcServerCall): string {
  return decodeMessage(HealthRequestSpec, call.request).service as string;
}

function response(status: ServingStatus): Buffer {
  return encodeMessage(HealthResponseSpec, { status: SERVING_STATUSES.indexOf(status) });
}
