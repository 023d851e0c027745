/**
 * What the pod-manager's service account may write, enforced by the API server:
 * ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, GA since Kubernetes 1.30) and their
 * bindings, part of the manifests (kube-manifests.ts). RBAC lets the account create Deployments, and
 * a Deployment may run any image with any volume, the namespace's Secrets included; the policy
 * admits only module Deployments as kube-objects.ts builds them: splice-orc's labels, the configured
 * images, no Secrets or service-account tokens, nothing of the host's, the hardened security
 * context. Services must be splice-orc's ClusterIP or headless ones, and a pod update may change
 * only annotations (the scale-down mark). Requests of anyone else are not affected.
 */
import type {
  V1NamedRuleWithOperations,
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
  V1Validation,
  V1Variable,
} from '@kubernetes/client-node';
import { COMPONENT, MANAGED_BY } from '../backends/kube-objects.js';

/** Options of {@link admissionPolicies}. */
export interface AdmissionPolicyOptions {
  namespace: string;
  /** The pod-manager's service account: the only user the policies apply to. */
  serviceAccount: string;
  /** Images module containers may run: the module images (Node, Python) and the modules' own `image`. */
  images: readonly string[];
  /** Labels of the policies and bindings. */
  labels: Record<string, string>;
}

const API = 'admissionregistration.k8s.io/v1';
/** Labels of a module's Deployment, Service and pods (kube-objects.ts labelsFor). */
const OURS = { [MANAGED_BY]: 'splice-orc', [COMPONENT]: 'module-server' };
/** Module pods are named so too: a pod labelled as the pod-manager would pass its NetworkPolicies. */
const POD_OURS = { ...OURS, 'app.kubernetes.io/name': 'splice-orc-module' };

/** CEL: every clause holds. */
const and = (...clauses: string[]) => clauses.join(' && ');
/** CEL: `map` (a variable) holds each label with its value. */
const labelled = (map: string, labels: Record<string, string>) =>
  and(...Object.entries(labels).map(([k, v]) => `'${k}' in ${map} && ${map}['${k}'] == '${v}'`));
/** CEL: an optional boolean field is set and true. */
const isTrue = (field: string) => `(has(${field}) && ${field})`;
const LABELS: V1Variable = {
  name: 'labels',
  expression: 'has(object.metadata.labels) ? object.metadata.labels : {}',
};

/**
 * A policy and its binding per resource (so that each is type-checked against one kind); all
 * cluster-scoped, so named after the namespace: `<service account>.<namespace>.<resource>`.
 */
export function admissionPolicies(
  o: AdmissionPolicyOptions,
): Array<V1ValidatingAdmissionPolicy | V1ValidatingAdmissionPolicyBinding> {
  const write = ['CREATE', 'UPDATE'];
  const template = 'object.spec.template';
  return [
    ...policy(o, {
      rule: { apiGroups: ['apps'], apiVersions: ['v1'], operations: write, resources: ['deployments'] },
      variables: [
        LABELS,
        {
          name: 'podLabels',
          expression: `has(${template}.metadata) && has(${template}.metadata.labels) ? ${template}.metadata.labels : {}`,
        },
        { name: 'pod', expression: `${template}.spec` },
        {
          name: 'containers',
          expression:
            'variables.pod.containers + (has(variables.pod.initContainers) ? variables.pod.initContainers : [])',
        },
        { name: 'volumes', expression: 'has(variables.pod.volumes) ? variables.pod.volumes : []' },
      ],
      validations: deploymentRules(o.images),
    }),
    ...policy(o, {
      rule: { apiGroups: [''], apiVersions: ['v1'], operations: write, resources: ['services'] },
      variables: [LABELS],
      validations: [
        {
          expression: and(
            labelled('variables.labels', OURS),
            "(!has(object.spec.type) || object.spec.type == 'ClusterIP')",
            '(!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0)',
          ),
          message: `the pod-manager may only write Services of type ClusterIP (or headless) without externalIPs, labelled ${MANAGED_BY}=splice-orc and ${COMPONENT}=module-server`,
        },
      ],
    }),
    ...policy(o, {
      // The pod-manager marks a pod for scale-down with an annotation; a pod's image and labels
      // are mutable too, and changed labels would take it out of the NetworkPolicies.
      rule: { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['pods'] },
      variables: [LABELS],
      validations: [
        {
          expression: and(
            labelled('variables.labels', OURS),
            'object.spec == oldObject.spec',
            'variables.labels == (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {})',
          ),
          message:
            "the pod-manager may only change the annotations of module pods, never a pod's spec or labels",
        },
      ],
    }),
  ];
}

function policy(
  o: AdmissionPolicyOptions,
  p: { rule: V1NamedRuleWithOperations; variables: V1Variable[]; validations: V1Validation[] },
): [V1ValidatingAdmissionPolicy, V1ValidatingAdmissionPolicyBinding] {
  const name = `${o.serviceAccount}.${o.namespace}.${p.rule.resources?.[0]}`;
  return [
    {
      apiVersion: API,
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name, labels: o.labels },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [p.rule] },
        matchConditions: [
          {
            name: 'pod-manager-service-account',
            expression: `request.userInfo.username == 'system:serviceaccount:${o.namespace}:${o.serviceAccount}'`,
          },
        ],
        variables: p.variables,
        validations: p.validations,
      },
    },
    {
      apiVersion: API,
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name, labels: o.labels },
      spec: {
        policyName: name,
        validationActions: ['Deny'],
        matchResources: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': o.namespace } },
        },
      },
    },
  ];
}

/** One rule per concern, each with the message a refused Deployment gets. */
function deploymentRules(images: readonly string[]): V1Validation[] {
  const pod = 'variables.pod';
  const context = 'c.securityContext';
  return [
    {
      expression: and(labelled('variables.labels', OURS), labelled('variables.podLabels', POD_OURS)),
      message: `the pod-manager may only write Deployments labelled ${MANAGED_BY}=splice-orc and ${COMPONENT}=module-server whose pods carry those labels and app.kubernetes.io/name=splice-orc-module`,
    },
    {
      expression: `variables.containers.all(c, c.image in ${JSON.stringify(images)})`,
      message: `module containers may only run the configured images: ${images.join(', ')} (kubernetes.module_image, kubernetes.python_module_image and the modules' "image"; generate the manifests again after changing them)`,
    },
    {
      expression: and(
        'variables.volumes.all(v, !has(v.secret) && (!has(v.projected) || !has(v.projected.sources) || ' +
          'v.projected.sources.all(s, !has(s.secret) && !has(s.serviceAccountToken))))',
        'variables.containers.all(c, !has(c.env) || c.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef)))',
        'variables.containers.all(c, !has(c.envFrom) || c.envFrom.all(e, !has(e.secretRef)))',
      ),
      message:
        'module pods may not read Secrets or service-account tokens: no secret volumes, projected secret or token sources, env secretKeyRef or envFrom secretRef',
    },
    {
      expression: `has(${pod}.automountServiceAccountToken) && ${pod}.automountServiceAccountToken == false`,
      message: 'module pods must set automountServiceAccountToken: false',
    },
    {
      expression: and(
        `!${isTrue(`${pod}.hostNetwork`)}`,
        `!${isTrue(`${pod}.hostPID`)}`,
        `!${isTrue(`${pod}.hostIPC`)}`,
        'variables.volumes.all(v, !has(v.hostPath))',
        'variables.containers.all(c, !has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))',
      ),
      message:
        "module pods may not use the host's network, PID or IPC namespace, host ports or hostPath volumes",
    },
    {
      expression: 'variables.volumes.all(v, has(v.emptyDir))',
      message: 'module pods may only have emptyDir volumes',
    },
    {
      expression: `variables.containers.all(c, ${and(
        `has(${context})`,
        isTrue(`${context}.runAsNonRoot`),
        `has(${context}.allowPrivilegeEscalation) && ${context}.allowPrivilegeEscalation == false`,
        isTrue(`${context}.readOnlyRootFilesystem`),
        `!${isTrue(`${context}.privileged`)}`,
        `has(${context}.capabilities) && has(${context}.capabilities.drop) && 'ALL' in ${context}.capabilities.drop`,
        `(!has(${context}.capabilities.add) || size(${context}.capabilities.add) == 0)`,
      )})`,
      message:
        'every container and init container must set runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true and capabilities that drop ALL and add none, and not be privileged',
    },
  ];
}
