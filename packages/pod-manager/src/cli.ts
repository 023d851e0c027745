#!/usr/bin/env node
/** `splice-orc`: the command line of the pod-manager. */
import { Command, InvalidArgumentError } from 'commander';
import { addRemoteCommands, CliError } from './cli-remote.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

const program = new Command('splice-orc').description('Use any Node module as a remote service.');

program
  .command('serve')
  .description('start the pod-manager (local backend unless the config says kubernetes)')
  .option('-c, --config <file>', 'config file', process.env.SPLICE_CONFIG ?? 'config/config.json')
  .option('-p, --port <n>', 'port to listen on (overrides server.port; 0 = any free port)', port)
  .option('-H, --host <address>', 'address to listen on (overrides server.host)')
  .action(async (opts: { config: string; port?: number; host?: string }) => {
    // Loaded here so that the remote commands start fast.
    const [{ startPodManager }, { ConfigError }] = await Promise.all([
      import('./main.js'),
      import('./config.js'),
    ]);
    try {
      const { url } = await startPodManager({ configPath: opts.config, port: opts.port, host: opts.host });
      process.stdout.write(`splice-orc pod-manager listening on ${url}\n`);
    } catch (error) {
      process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
      process.exit(error instanceof ConfigError ? 2 : 1);
    }
  });

addRemoteCommands(program);

try {
  await program.parseAsync();
} catch (error) {
  process.stderr.write(`splice-orc: ${error instanceof CliError ? error.message : String(error)}\n`);
  process.exit(1);
}
