/**
 * Loads the gRPC contract from `proto/` (the only place that does) and exposes the ModuleService
 * definition for servers and clients.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Package-qualified name of the service, as it appears in gRPC paths and health checks. */
export const MODULE_SERVICE_NAME = 'splice.v1.ModuleService';

/**
 * Trailer a module-server sets on an Invoke answer whose module threw (value `remote-error`), so the
 * pod-manager can count outcomes without decoding payloads.
 */
export const OUTCOME_TRAILER = 'splice-outcome';

/** Full gRPC method path of Invoke, for code that sends raw calls. */
export const INVOKE_PATH = `/${MODULE_SERVICE_NAME}/Invoke`;

/** Where the .proto files are: copied beside the built code, or the repository's own folder. */
function protoRoot(): string {
  const candidates = ['./proto/', '../../../proto/'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((dir) => existsSync(`${dir}splice/v1/module.proto`));
  if (!found) throw new Error(`splice proto files not found in ${candidates.join(' or ')}`);
  return found;
}

let definition: grpc.ServiceDefinition | undefined;

/** The ModuleService definition, loaded once. */
export function moduleServiceDefinition(): grpc.ServiceDefinition {
  if (!definition) {
    const root = protoRoot();
    const packageDefinition = protoLoader.loadSync('splice/v1/module.proto', {
      includeDirs: [root],
      keepCase: true,
      longs: Number,
      defaults: true,
    });
    const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
      splice: { v1: { ModuleService: grpc.ServiceClientConstructor } };
    };
    definition = loaded.splice.v1.ModuleService.service;
  }
  return definition;
}

/** What `Stats` answers. */
export interface ServerStats {
  server_id: string;
  sessions: number;
  objects: number;
  in_flight: number;
  calls: number;
}

/** The payload message of both directions of Invoke. */
export interface PayloadMessage {
  payload: Buffer;
}
