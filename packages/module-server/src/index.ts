export { createModuleServer, type ModuleServer, type ModuleServerOptions } from './server.js';
