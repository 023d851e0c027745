/**
 * The JSON Schema (TypeBox) of config/config.json: jac-splice-orc's keys (`kubernetes`,
 * `module_config`, `environment`) and splice-orc's own (`server`, `policy`), with defaults and units.
 */
import { Type as T } from '@sinclair/typebox';
import { Rest } from '@splice-orc/protocol';
import { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE } from './deploy/images.js';

/** A string enum as JSON Schema `enum`, so a wrong value gets one message naming the allowed ones. */
const oneOf = <const V extends string>(values: readonly V[], fallback: V) =>
  T.Unsafe<V>({ type: 'string', enum: values, default: fallback });

const quantity = (example: string, fallback?: string) =>
  T.String({
    pattern: '^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$',
    description: `Kubernetes quantity, e.g. ${example}`,
    ...(fallback === undefined ? {} : { default: fallback }),
  });

/**
 * An npm spec or pip requirement: never an option of the installer (`--index-url=...`, `-r file`)
 * and no control characters. npm and pip are also told where their options end (`--`).
 */
const PackageSpec = T.String({
  minLength: 1,
  maxLength: 2048,
  pattern: '^[^-\\s][^\\x00-\\x1f\\x7f]*$',
  description: 'package spec or requirement (it may not start with - or hold control characters)',
});

export const ModuleConfig = T.Object(
  {
    /** Memory the module's server needs (Kubernetes quantity). Kept from jac-splice-orc. */
    lib_mem_size_req: T.Optional(quantity('100Mi')),
    /** CPU the module's server needs (Kubernetes quantity). Kept from jac-splice-orc. */
    lib_cpu_req: T.Optional(quantity('500m')),
    /**
     * What serves the module: `node` (an npm package, served by the Node module-server) or `python`
     * (a pip requirement, served by the Python module-server in a virtual environment of its own).
     */
    runtime: oneOf(['node', 'python'], 'node'),
    /** Extra packages installed beside the module: npm specs, or pip requirements for Python. */
    dependency: T.Array(PackageSpec, { default: [] }),
    /** Placement: served remotely, imported in the client, or decided by policy. */
    load_type: oneOf(['remote', 'local', 'auto'], 'remote'),
    /**
     * What to install: an npm spec (`mathjs@13`, `file:./fixtures/calc`) or, for Python, a pip
     * requirement (`numpy>=2`, `./wheels/x.whl`); default: the module name.
     */
    package: T.Optional(PackageSpec),
    /** Stop the module after this long with no call and no live reference, s (0 = never). */
    idle_timeout_s: T.Number({ minimum: 0, default: 0 }),
    /** Replicas kept running even when idle; > 0 also keeps the module warm. */
    min_replicas: T.Integer({ minimum: 0, maximum: 256, default: 0 }),
    /** Most replicas the autoscaler may run. */
    max_replicas: T.Integer({ minimum: 1, maximum: 256, default: 1 }),
    /** Calls in flight per replica the autoscaler aims for. */
    target_concurrency: T.Integer({ minimum: 1, maximum: 1_000_000, default: 32 }),
    /** Start the module at start-up and bring it back whenever it dies (JSORC's keep_alive). */
    keep_warm: T.Boolean({ default: false }),
    /** CPU limit of the module's pod (Kubernetes); none by default, so the pod may burst. */
    lib_cpu_limit: T.Optional(quantity('1')),
    /**
     * Memory limit of the module's server container (Kubernetes quantity, bytes): past it the
     * container is OOM-killed and restarted, not the node. Without lib_mem_size_req the cluster
     * takes it as the request too.
     */
    lib_mem_limit: quantity('256Mi', '512Mi'),
    /**
     * Memory limit of the init container that installs the module with npm (Kubernetes quantity,
     * bytes). Its request is the server's (at most this), so installing reserves nothing extra.
     */
    install_mem_limit: quantity('1Gi', '1Gi'),
    /**
     * Size limit of each of the two volumes an install writes (Kubernetes quantity, bytes): the
     * installed module (`/modules`) and npm's cache and temporary files. A pod that writes more is
     * evicted.
     */
    install_size_limit: quantity('2Gi', '1Gi'),
    /**
     * A prebuilt image holding the module (Kubernetes): its pods start it as is, with nothing to
     * install. Without one, an init container installs the package into the pod.
     */
    image: T.Optional(T.String({ minLength: 1 })),
    /**
     * Let module code compile strings (`eval`, `new Function`): off by default, so that a caller
     * cannot make a module run code it sends (template engines, validators that compile schemas
     * and similar modules need it on; see the README's Security section).
     */
    allow_code_generation: T.Boolean({ default: false }),
    /**
     * Run the install scripts (`preinstall`, `postinstall`...) of the module and its dependencies:
     * off by default (npm --ignore-scripts); on only for packages that need their build scripts.
     * A change over REST may not turn it on.
     */
    install_scripts: T.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

const PodManagerSection = T.Object(
  {
    deployment_name: T.Optional(T.String()),
    service_account_name: T.Optional(T.String()),
    container_name: T.Optional(T.String()),
    image_name: T.Optional(T.String()),
    container_port: T.Optional(T.Integer({ minimum: 1, maximum: 65535 })),
    service_name: T.Optional(T.String()),
    service_type: T.Optional(T.String()),
    env_vars: T.Optional(T.Record(T.String(), T.String())),
    resources: T.Optional(
      T.Object(
        {
          requests: T.Optional(T.Record(T.String(), T.String())),
          limits: T.Optional(T.Record(T.String(), T.String())),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const ServerSection = T.Object(
  {
    /** Address the REST API binds. */
    host: T.String({ default: '127.0.0.1' }),
    /** Port of the REST API. */
    port: T.Integer({ minimum: 0, maximum: 65535, default: 8000 }),
    /** Where module-servers run: local child processes (embedded default) or Kubernetes pods. */
    backend: oneOf(['local', 'kubernetes'], 'local'),
    /** Python 3.10+ that makes the virtual environments of Python modules (local backend). */
    python: T.String({ minLength: 1, default: 'python3' }),
    /**
     * The package index pip installs Python modules from (`--index-url`; a PEP 503 simple index,
     * such as a mirror); default PyPI. Pods get it as PIP_INDEX_URL.
     */
    python_index_url: T.Optional(
      T.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048, description: 'http(s) URL' }),
    ),
    /** Directory of installed modules, keyed by what is installed. Default ~/.cache/splice-orc. */
    cache_dir: T.Optional(T.String({ minLength: 1 })),
    /** Longest a forwarded invocation may take, ms. A client may ask for less. */
    invoke_timeout_ms: T.Integer({ minimum: 1, default: 30_000 }),
    /** Longest a module may take to install and become ready, ms. */
    start_timeout_ms: T.Integer({ minimum: 1, default: 300_000 }),
    /**
     * Calls to one module-server that reach the pod-manager in the same turn of its event loop (many
     * clients, or one client's calls in flight without auto-batching) go to it as one InvokeBatch,
     * each with its own answer, deadline and cancel; a lone call goes at once as a plain Invoke.
     */
    coalesce_calls: T.Boolean({ default: true }),
    /** Largest invocation payload either way, bytes. */
    max_payload_bytes: T.Integer({ minimum: 1024, default: 16 * 1024 * 1024 }),
    /** How long a module-server keeps a silent client's references, ms. */
    lease_ms: T.Integer({ minimum: 100, default: 60_000 }),
    /**
     * On SIGTERM, how long calls in flight may finish before their connections are closed, ms;
     * then module-servers are stopped (each within grace_ms) and the process exits.
     */
    shutdown_grace_ms: T.Integer({ minimum: 0, default: 10_000 }),
    /** Longest a stopping module-server may finish calls in flight, ms. */
    grace_ms: T.Integer({ minimum: 0, default: 5_000 }),
    /**
     * How often the health of a ready module-server is checked, ms (0 = never). A server that
     * fails `liveness_failures` checks in a row (its event loop is stuck, e.g. in a synchronous
     * endless loop of module code) is killed and restarted, like a failed Kubernetes liveness probe.
     */
    liveness_interval_ms: T.Integer({ minimum: 0, default: 10_000 }),
    /** Failed health checks in a row before a module-server is restarted. */
    liveness_failures: T.Integer({ minimum: 1, default: 3 }),
    /**
     * Bearer token every endpoint but /healthz and /readyz requires (or SPLICE_AUTH_TOKEN). Without
     * one the pod-manager listens on loopback only.
     */
    auth_token: T.Optional(T.String({ minLength: 16 })),
    /**
     * Run local module-servers under Node's permission model: read-only file system, no child
     * processes, workers or native addons. Turn off for modules that need them.
     */
    isolate_modules: T.Boolean({ default: true }),
    /**
     * Control requests (load, unload, module config, policy, job submit and cancel: the ones that
     * start or stop work) one client address may make per minute, over all of them; past it, 429
     * RATE_LIMITED with Retry-After. 0: no limit. Calls to modules are not counted.
     */
    control_rate_limit_per_minute: T.Integer({ minimum: 0, maximum: 1_000_000, default: 120 }),
    /**
     * Most module-server processes the local backend runs at once, over all modules (starting,
     * serving and stopping): past it, a start or scale-up is refused with SERVER_LIMIT, so that no
     * config (min_replicas set over REST included) can exhaust the machine.
     */
    max_module_servers: T.Integer({ minimum: 1, maximum: 10_000, default: 64 }),
    /** Remote references one client session may hold on one module-server. */
    max_objects_per_session: T.Integer({ minimum: 1, default: 100_000 }),
    /** Remote references all sessions together may hold on one module-server. */
    max_objects_per_server: T.Integer({ minimum: 1, default: 250_000 }),
    /** Client sessions one module-server keeps at once (sessions holding nothing make room). */
    max_sessions_per_server: T.Integer({ minimum: 1, default: 10_000 }),
    /**
     * What `PUT /modules/:name/config` may install. The config file is the operator's and is
     * trusted; a package or dependency spec sent over REST must be of an allowed kind: `registry`
     * (a name, version, range, tag or npm: alias), `file` (a folder or tarball under one of
     * `file_roots`), `url` (a tarball URL), `git`. `allow_change: false` refuses any change of
     * package or dependencies over REST.
     */
    package_policy: T.Object(
      {
        allow_change: T.Boolean({ default: true }),
        allow: T.Array(oneOf(['registry', 'file', 'url', 'git'], 'registry'), {
          default: ['registry', 'file'],
          uniqueItems: true,
        }),
        /** Folders `file:` specs may point into (relative to the config file); default: its folder. */
        file_roots: T.Array(T.String({ minLength: 1 }), { default: ['.'] }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Most calls of one module that may wait for it to start; more are refused with 503. */
    queue_limit: T.Integer({ minimum: 0, default: 1_000 }),
    /** Longest a call waits for its module to start, ms; then 503. */
    queue_timeout_ms: T.Integer({ minimum: 1, default: 120_000 }),
    /** Calls in flight are averaged over this window before the autoscaler acts, s. */
    scale_window_s: T.Number({ minimum: 0, default: 10 }),
    /** A replica is removed only after load has been low for this long, s. */
    scale_down_delay_s: T.Number({ minimum: 0, default: 30 }),
    /** Period of the lifecycle loop (idle stop, autoscaling, keep-warm), ms. */
    lifecycle_interval_ms: T.Integer({ minimum: 10, default: 1_000 }),
    /** Where runtime changes (module config, modes, policy) are kept across restarts. Default <cache_dir>/state-<hash of the config path>.json. */
    state_file: T.Optional(T.String({ minLength: 1 })),
  },
  { additionalProperties: false, default: {} },
);

/** Batch jobs (`POST /jobs`): limits over all jobs, and where they are kept. */
const JobsSection = T.Object(
  {
    /** Jobs running at once; more wait in the queue (submit) or are refused (run). */
    max_running: T.Integer({ minimum: 1, maximum: 1_000, default: 4 }),
    /** Workers (replicas) all running jobs use together, speculative extra workers included. */
    max_workers: T.Integer({ minimum: 1, maximum: 10_000, default: 16 }),
    /** Jobs waiting for workers; past it a submit is refused with JOB_QUEUE_FULL. */
    max_queued: T.Integer({ minimum: 0, maximum: 100_000, default: 100 }),
    /** Finished jobs kept with their results; older ones are deleted. */
    keep_finished: T.Integer({ minimum: 1, maximum: 1_000_000, default: 1_000 }),
    /** Largest body of POST /jobs (inline inputs or NDJSON), bytes. */
    max_body_bytes: T.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 64 * 1024 * 1024 }),
    /** The SQLite file. Default: jobs.sqlite beside server.state_file (the pod-manager's state directory). */
    database: T.Optional(T.String({ minLength: 1 })),
  },
  { additionalProperties: false, default: {} },
);

export const ConfigSchema = T.Object(
  {
    kubernetes: T.Object(
      {
        namespace: T.String({ minLength: 1, default: 'splice-orc' }),
        service_account_name: T.Optional(T.String()),
        /** kubeconfig file of the cluster; default $KUBECONFIG, ~/.kube/config, or the pod's service account. */
        kubeconfig: T.Optional(T.String({ minLength: 1 })),
        /** The pod watch is replaced by a fresh one this often, s (a half-open connection delivers nothing). */
        watch_renew_s: T.Number({ minimum: 0.1, default: 300 }),
        /** Longest one request to the Kubernetes API may take, ms. */
        request_timeout_ms: T.Integer({ minimum: 100, default: 10_000 }),
        /** Image of module pods (the splice-orc image: it installs and serves any npm module). */
        module_image: T.String({ minLength: 1, default: DEFAULT_IMAGE }),
        /** Image of Python module pods (the Python module-server: it pip-installs and serves a module). */
        python_module_image: T.String({ minLength: 1, default: DEFAULT_PYTHON_IMAGE }),
        /** imagePullPolicy of module pods. */
        image_pull_policy: oneOf(['IfNotPresent', 'Always', 'Never'], 'IfNotPresent'),
        /** Labels added to every module pod (for example, for a NetworkPolicy of your own). */
        pod_labels: T.Record(T.String(), T.String(), { default: {} }),
        /**
         * nodeSelector of module pods: node labels a module pod must find on its node (for example,
         * a pool of nodes for module code, or a test's real node). Default: any node.
         */
        node_selector: T.Record(T.String({ minLength: 1, maxLength: 317 }), T.String({ maxLength: 63 }), {
          default: {},
        }),
        pod_manager: T.Optional(PodManagerSection),
      },
      { additionalProperties: false, default: {} },
    ),
    module_config: T.Record(T.String({ pattern: Rest.MODULE_NAME_PATTERN, maxLength: 214 }), ModuleConfig, {
      additionalProperties: false,
    }),
    policy: T.Object(
      {
        /** Placement policy: default (follow load_type) or adaptive (see placement.ts). */
        name: oneOf(['default', 'adaptive'], 'default'),
        /** How often the adaptive policy re-evaluates, s. */
        interval_s: T.Number({ exclusiveMinimum: 0, maximum: 86_400, default: 30 }),
        /** Memory a client may give local modules when it reports none. */
        client_memory_budget: quantity('512Mi', '512Mi'),
        /** Least time saved per call, ms, for local placement to be worth it. */
        min_gain_ms: T.Number({ minimum: 0, default: 0.2 }),
      },
      { additionalProperties: false, default: {} },
    ),
    environment: T.Object(
      { POD_MANAGER_URL: T.Optional(T.String()) },
      { additionalProperties: false, default: {} },
    ),
    server: ServerSection,
    jobs: JobsSection,
  },
  { additionalProperties: false },
);
