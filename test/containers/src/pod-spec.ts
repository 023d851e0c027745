/**
 * `docker run` arguments for a container of a Kubernetes pod spec, as a kubelet would run it:
 * its image, command, environment, user, read-only root, capabilities, privilege escalation,
 * memory and CPU limits and volumes. What Docker cannot say the same way is mapped to the nearest
 * thing (below); the network is the host's, as this machine's engine has no bridge, so servers
 * are told a loopback address and a free port instead of the pod's. Not mapped: fsGroup (Docker
 * has none: a new named volume takes the owner of the image's folder it is mounted on, which is
 * why the image's /modules belongs to uid 1000), probes (the tests probe with grpc-health-probe
 * themselves), preStop and the termination grace period.
 */
import type { deploymentFor } from '@splice-orc/pod-manager/kubernetes';
import { bytesFromQuantity } from '@splice-orc/protocol';

type Deployment = ReturnType<typeof deploymentFor>;
/** A pod spec, as the Kubernetes client types it. */
export type PodSpec = NonNullable<NonNullable<Deployment['spec']>['template']['spec']>;
/** A container of a pod spec. */
export type Container = PodSpec['containers'][number];

/** What the pod spec leaves to the cluster, given here. */
export interface PodRunOptions {
  /** The pod's name (the downward API's metadata.name). */
  podName: string;
  /** The pod's namespace (metadata.namespace). Default `splice-orc`. */
  namespace?: string;
  /** Where each volume comes from: a named Docker volume or a host folder, by the pod's volume name.
   * An emptyDir not named here is a tmpfs of its sizeLimit, private to the container. */
  volumes?: Record<string, string>;
  /** Values of secretKeyRef variables, by `secret/key`. */
  secrets?: Record<string, string>;
  /** Variables set or replaced (the address to bind, a free port). */
  env?: Record<string, string>;
  /** Further `docker run` options (a fixtures mount). */
  extra?: string[];
}

/** `docker run` options, image and command for `container` of `pod`. */
export function dockerRunArgs(pod: PodSpec, container: Container, o: PodRunOptions): string[] {
  const args = ['--network', 'host', ...securityArgs(pod, container), ...resourceArgs(container)];
  for (const [name, value] of Object.entries({ ...envOf(container, o), ...o.env }))
    args.push('-e', `${name}=${value}`);
  args.push(...volumeArgs(pod, container, o), ...(o.extra ?? []));
  const [entrypoint, ...command] = container.command ?? [];
  if (entrypoint !== undefined) args.push('--entrypoint', entrypoint);
  if (!container.image) throw new Error(`container ${container.name} names no image`);
  args.push(container.image, ...command, ...(container.args ?? []));
  return args;
}

function securityArgs(pod: PodSpec, container: Container): string[] {
  const podContext = pod.securityContext ?? {};
  const context = container.securityContext ?? {};
  const user = context.runAsUser ?? podContext.runAsUser;
  const group = context.runAsGroup ?? podContext.runAsGroup;
  if ((context.runAsNonRoot ?? podContext.runAsNonRoot) && !user) {
    throw new Error(`container ${container.name}: runAsNonRoot without a runAsUser is not mapped`);
  }
  const args = user === undefined ? [] : ['--user', group === undefined ? `${user}` : `${user}:${group}`];
  if (context.readOnlyRootFilesystem) args.push('--read-only');
  for (const cap of context.capabilities?.drop ?? []) args.push('--cap-drop', cap);
  for (const cap of context.capabilities?.add ?? []) args.push('--cap-add', cap);
  if (context.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  // seccomp RuntimeDefault is Docker's default profile: nothing to add.
  return args;
}

function resourceArgs(container: Container): string[] {
  const limits = container.resources?.limits ?? {};
  const args: string[] = [];
  if (limits.memory) args.push('--memory', String(bytesFromQuantity(limits.memory)));
  if (limits.cpu) {
    const cpu = limits.cpu.endsWith('m') ? Number.parseInt(limits.cpu, 10) / 1000 : Number(limits.cpu);
    args.push('--cpus', String(cpu));
  }
  return args;
}

function envOf(container: Container, o: PodRunOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const field = variable.valueFrom?.fieldRef?.fieldPath;
    const secret = variable.valueFrom?.secretKeyRef;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (field === 'metadata.name') env[variable.name] = o.podName;
    else if (field === 'metadata.namespace') env[variable.name] = o.namespace ?? 'splice-orc';
    else if (secret && o.secrets?.[`${secret.name}/${secret.key}`] !== undefined) {
      env[variable.name] = o.secrets[`${secret.name}/${secret.key}`] as string;
    } else throw new Error(`container ${container.name}: no value for ${variable.name}`);
  }
  return env;
}

function volumeArgs(pod: PodSpec, container: Container, o: PodRunOptions): string[] {
  const args: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === mount.name);
    const source = o.volumes?.[mount.name];
    if (source !== undefined) {
      args.push('-v', `${source}:${mount.mountPath}${mount.readOnly ? ':ro' : ''}`);
    } else if (volume?.emptyDir) {
      // An emptyDir is writable by the pod's user (fsGroup) and may hold programs: a tmpfs with
      // mode 1777 and exec (Docker's default is noexec), of its sizeLimit.
      const size = volume.emptyDir.sizeLimit ? `,size=${bytesFromQuantity(volume.emptyDir.sizeLimit)}` : '';
      args.push('--tmpfs', `${mount.mountPath}:rw,exec,mode=1777${size}`);
    } else {
      throw new Error(`container ${container.name}: volume ${mount.name} is given no source`);
    }
  }
  return args;
}
