export {
  codeGenerationDisallowed,
  environmentFor,
  NO_CODE_GENERATION_FLAG,
  parseEnvironment,
  type ServerEnvironment,
  type ServerSettings,
} from './environment.js';
export {
  createModuleServer,
  MIN_SECRET_LENGTH,
  type ModuleServer,
  type ModuleServerOptions,
} from './server.js';
