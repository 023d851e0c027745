export { type BuildAppOptions, buildApp } from './app.js';
export type { Backend, ModuleState, ModuleStatus } from './backends/backend.js';
export {
  type Config,
  ConfigError,
  loadConfig,
  type ModuleSpec,
  parseConfig,
  type RawConfig,
} from './config.js';
export { errorTable, ServiceError, type ServiceErrorCode } from './errors.js';
export { type StartOptions, startPodManager } from './main.js';
