#!/usr/bin/env node
/** `splice-orc`: the command line of the pod-manager. */
import { existsSync, readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { addRemoteCommands, CliError } from './cli/remote-commands.js';
import { readEnvironment } from './config.js';
import { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE } from './deploy/images.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of seconds');
  return n;
}

/** module_config of a config file, or none when the file does not exist. */
function modulesOf(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {};
  try {
    return (
      (JSON.parse(readFileSync(path, 'utf8')) as { module_config?: Record<string, unknown> }).module_config ??
      {}
    );
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

const program = new Command('splice-orc').description('Use any Node module as a remote service.');

program
  .command('serve')
  .description('start the pod-manager (local backend unless the config says kubernetes)')
  .option('-c, --config <file>', 'config file', readEnvironment().configPath)
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

program
  .command('manifests')
  .description("print the pod-manager's Kubernetes objects as YAML (what k8s/ holds and init applies)")
  .option('-n, --namespace <name>', 'namespace', 'splice-orc')
  .option('-i, --image <image>', 'splice-orc image', DEFAULT_IMAGE)
  .option('--python-image <image>', "the Python module-server's image", DEFAULT_PYTHON_IMAGE)
  .option('-c, --config <file>', 'config whose module_config goes into the ConfigMap', 'config/config.json')
  .option('-o, --out-dir <dir>', 'write one file per object and a kustomization.yaml there')
  .action(
    async (opts: {
      namespace: string;
      image: string;
      pythonImage: string;
      config: string;
      outDir?: string;
    }) => {
      const { manifestsYaml, writeManifests } = await import('./deploy/kube-cli.js');
      const options = {
        namespace: opts.namespace,
        image: opts.image,
        pythonImage: opts.pythonImage,
        modules: modulesOf(opts.config),
      };
      if (opts.outDir) {
        for (const file of writeManifests(opts.outDir, options))
          process.stderr.write(`wrote ${opts.outDir}/${file}\n`);
      } else {
        process.stdout.write(manifestsYaml(options));
      }
    },
  );

program
  .command('chart')
  .description('write the Helm chart (k8s/chart): the same objects as `manifests`, with values')
  .requiredOption('-o, --out-dir <dir>', 'the chart folder (replaced)')
  .option('--rules <file>', 'alert rules the chart carries (its PrometheusRule)', 'k8s/monitoring/rules.yml')
  .action(async (opts: { outDir: string; rules: string }) => {
    const { writeChart } = await import('./deploy/kube-chart.js');
    let rules: string;
    try {
      rules = readFileSync(opts.rules, 'utf8');
    } catch (error) {
      throw new CliError(`cannot read ${opts.rules}: ${(error as Error).message}`);
    }
    for (const file of writeChart(opts.outDir, rules)) process.stderr.write(`wrote ${opts.outDir}/${file}\n`);
  });

program
  .command('init [namespace]')
  .description(
    'deploy the pod-manager into a cluster (server-side apply; run again to update) and wait until it is ready',
  )
  .option('-i, --image <image>', 'splice-orc image', DEFAULT_IMAGE)
  .option('--python-image <image>', "the Python module-server's image", DEFAULT_PYTHON_IMAGE)
  .option('-c, --config <file>', 'config whose module_config goes into the ConfigMap', 'config/config.json')
  .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG or ~/.kube/config)')
  .option('--timeout <s>', 'longest wait for the pod-manager to become ready, s', seconds, 300)
  .action(
    async (
      namespace: string | undefined,
      opts: { image: string; pythonImage: string; config: string; kubeconfig?: string; timeout: number },
    ) => {
      const { initCluster } = await import('./deploy/kube-init.js');
      const ns = namespace ?? 'splice-orc';
      const { url } = await initCluster({
        namespace: ns,
        image: opts.image,
        pythonImage: opts.pythonImage,
        modules: modulesOf(opts.config),
        kubeconfig: opts.kubeconfig,
        timeoutMs: opts.timeout * 1000,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`splice-orc pod-manager ready at ${url}\n`);
      process.stderr.write(
        `token: kubectl -n ${ns} get secret splice-orc-auth -o jsonpath='{.data.token}' | base64 -d\n`,
      );
    },
  );

addRemoteCommands(program);

try {
  await program.parseAsync();
} catch (error) {
  process.stderr.write(`splice-orc: ${error instanceof CliError ? error.message : String(error)}\n`);
  process.exit(1);
}
