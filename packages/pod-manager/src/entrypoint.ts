#!/usr/bin/env node
/**
 * Entry point of the splice-orc container image: one image, three roles, chosen by SERVICE_TYPE.
 *
 * | SERVICE_TYPE | role | configured by |
 * | --- | --- | --- |
 * | pod_manager | the REST API and orchestrator (`splice-orc serve`) | SPLICE_CONFIG (default /etc/splice-orc/config.json), HOST, PORT, SPLICE_AUTH_TOKEN |
 * | module_service | one module-server | MODULE_NAME, MODULE_RESOLVE_FROM, HOST, PORT (see module-server's main) |
 * | module_install | installs a module into a folder, then exits (the init container of module pods) | MODULE_PACKAGE, MODULE_DEPENDENCIES (JSON list), MODULE_RESOLVE_FROM |
 *
 * Any other value, or none, exits with status 2 and a message naming the accepted values.
 */
import { dispatchEntrypoint } from './service-type.js';

process.exitCode = await dispatchEntrypoint(process.env);
