// Validates Kubernetes custom resources with the @kubernetes-models classes.
// Input: a JSON array of objects on stdin. Output: [{kind, name, error}], error null when valid.
// The models check required fields, types and enums but not unknown fields; the Python suite
// checks those against the upstream CRDs.
import { readFileSync } from "node:fs";

const PACKAGES = {
  "argoproj.io": "@kubernetes-models/argo-cd",
  "cert-manager.io": "@kubernetes-models/cert-manager",
  "external-secrets.io": "@kubernetes-models/external-secrets",
  "traefik.io": "@kubernetes-models/traefik",
};

const results = [];
for (const obj of JSON.parse(readFileSync(0, "utf8"))) {
  const [group, version] = obj.apiVersion.split("/");
  let error = null;
  try {
    if (!(group in PACKAGES)) throw new Error(`no model package for API group ${group}`);
    // The packages are ESM-only and export one module per group/version/kind.
    const module = await import(`${PACKAGES[group]}/${group}/${version}/${obj.kind}`);
    new module[obj.kind](obj).validate();
  } catch (e) {
    error = e.message;
  }
  results.push({ kind: obj.kind, name: obj.metadata?.name ?? "", error });
}
process.stdout.write(JSON.stringify(results));
