/**
 * The NetworkPolicies of a splice-orc namespace (part of the manifests, kube-manifests.ts). Module
 * pods take calls from the pod-manager only and reach nothing but DNS; pods that install their
 * module (INSTALL_LABEL) may also reach package registries (npm, PyPI) on TCP 443. The pod-manager takes HTTP on its
 * port and reaches DNS, the Kubernetes API server and module pods. Policies add up: a pod selected
 * by two gets what either allows. Written in client-node's models (`_from` is `from`).
 */
import type { V1NetworkPolicy, V1NetworkPolicyPort } from '@kubernetes/client-node';
import { CALLBACK_PORT, COMPONENT, GRPC_PORT, INSTALL_LABEL, MANAGED_BY } from '../backends/kube-objects.js';

/** Options of {@link networkPolicies}. */
export interface NetworkPolicyOptions {
  namespace: string;
  /** Labels of the policies themselves. */
  labels: Record<string, string>;
  /** Labels that select the pod-manager's pods. */
  podManager: Record<string, string>;
  /** The pod-manager's HTTP port. */
  httpPort: number;
}

/** Any destination's DNS, over UDP and TCP (the resolver's address differs between clusters). */
const DNS: V1NetworkPolicyPort[] = [
  { protocol: 'UDP', port: 53 },
  { protocol: 'TCP', port: 53 },
];
/** Where the API server listens: 443 behind its Service, 6443 on control-plane nodes (kubeadm, kind). */
const API_SERVER: V1NetworkPolicyPort[] = [
  { protocol: 'TCP', port: 443 },
  { protocol: 'TCP', port: 6443 },
];

/** The three policies: module pods, installing module pods, the pod-manager. */
export function networkPolicies(o: NetworkPolicyOptions): V1NetworkPolicy[] {
  const modules = { [MANAGED_BY]: 'splice-orc', [COMPONENT]: 'module-server' };
  // Calls, and the callback endpoint a Node module-server serves on a port of its own.
  const MODULE_PORTS = [
    { protocol: 'TCP', port: GRPC_PORT },
    { protocol: 'TCP', port: CALLBACK_PORT },
  ];
  const policy = (name: string, spec: V1NetworkPolicy['spec']): V1NetworkPolicy => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: o.namespace, labels: o.labels },
    spec,
  });
  return [
    policy('splice-orc-module-servers', {
      podSelector: { matchLabels: modules },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [
        {
          _from: [{ podSelector: { matchLabels: o.podManager } }],
          ports: MODULE_PORTS,
        },
      ],
      egress: [{ ports: DNS }],
    }),
    policy('splice-orc-module-installs', {
      podSelector: { matchLabels: modules, matchExpressions: [{ key: INSTALL_LABEL, operator: 'Exists' }] },
      policyTypes: ['Egress'],
      egress: [{ ports: [{ protocol: 'TCP', port: 443 }] }],
    }),
    policy('splice-orc-pod-manager', {
      podSelector: { matchLabels: o.podManager },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ ports: [{ protocol: 'TCP', port: o.httpPort }] }],
      egress: [
        { ports: DNS },
        { ports: API_SERVER },
        { to: [{ podSelector: { matchLabels: modules } }], ports: MODULE_PORTS },
      ],
    }),
  ];
}
