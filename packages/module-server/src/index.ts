export { FORBIDDEN_KEYS } from './guard.js';
export { ObjectTable, type ObjectTableOptions } from './object-table.js';
export { createModuleServer, type ModuleServer, type ModuleServerOptions } from './server.js';
