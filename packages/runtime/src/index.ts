export {
  type CallbackChannel,
  CallbackHub,
  type CallbackHubOptions,
  type CallbackMessage,
  withCallDeadline,
} from './callbacks.js';
export { bindValue, type ExecutionContext } from './executor.js';
export { FORBIDDEN_KEYS } from './guard.js';
export {
  createInvocationHandler,
  type InvocationHandlerOptions,
  type InvocationResult,
} from './invocation-handler.js';
export {
  exportNames,
  type LoadedModule,
  type LoadModuleOptions,
  loadModule,
  rootOf,
  writeImporter,
} from './module-host.js';
export { ObjectTable, type ObjectTableOptions } from './object-table.js';
