/** `splice-orc manifests`: the pod-manager's objects as one multi-document YAML. */
import { dumpYaml } from '@kubernetes/client-node';
import { type ManifestOptions, podManagerManifests } from './kube-manifests.js';

/** The manifests as YAML documents separated by `---`. */
export function manifestsYaml(o: ManifestOptions): string {
  return podManagerManifests(o)
    .map((object) => dumpYaml(object, { lineWidth: 120, noRefs: true }))
    .join('---\n');
}
