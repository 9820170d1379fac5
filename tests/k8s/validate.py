#!/usr/bin/env python3
"""Offline checks of rendered Kubernetes manifests (tests/k8s/validate.sh).

For every document of every file given:

* built-in kinds (core, apps, policy, networking.k8s.io, ...) are validated
  with kubernetes-validate --strict against the Kubernetes OpenAPI schemas
  it ships (no cluster, no network); an unknown kind is an error;
* monitoring.coreos.com kinds are validated against the openAPIV3Schema of
  their CustomResourceDefinition in tests/k8s/crds/ (upstream files, see the
  README there), strictly: a field the schema does not declare is an error,
  as `kubectl apply` (server-side field validation Strict) would report it;
  a kind with no CRD there, or any other API group, is an error;
* every pod template (Pod, DaemonSet, Deployment, StatefulSet, ReplicaSet,
  Job, CronJob) must meet the "restricted" Pod Security Standard (the
  checks of the Kubernetes docs, "Pod Security Standards", restricted
  profile, plus the baseline checks it includes) and the house rules
  (read-only root filesystem, CPU and memory requests and limits, liveness
  and readiness probes), and must run in a namespace that the same render
  declares with pod-security.kubernetes.io/enforce=restricted;
* every PodDisruptionBudget selects pods of the manifests, and uses an
  integer minAvailable when they belong to a controller without a scale
  subresource (a DaemonSet): anything else leaves the budget blocking every
  eviction.

Usage:
  validate.py --crds DIR FILE...            every FILE must pass
  validate.py --crds DIR --expect-fail FILE...
      every FILE must fail, with each message of its "# expect: ..." header
      lines among the errors (so a case fails for the reason it was written for)
  validate.py --crds DIR --mutations CASES.yaml RENDERED.yaml
      RENDERED must pass; then each mutation in CASES (one change to one
      object of RENDERED) must make it fail with the mutation's `expect`.
Exit status 0 when everything is as expected, 1 otherwise.
"""

import argparse
import copy
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.37.0"
CR_GROUP = "monitoring.coreos.com"
POD_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "DaemonSet": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Restricted profile: the only volume types allowed.
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
# Baseline: the only sysctls allowed.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def load_crds(crd_dir):
    """(group, version, kind) -> openAPIV3Schema, for every served version."""
    crds = {}
    for f in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served"):
                    key = (spec["group"], v["name"], spec["names"]["kind"])
                    crds[key] = strict_schema(v["schema"]["openAPIV3Schema"])
    if not crds:
        sys.exit(f"validate.py: no CustomResourceDefinition in {crd_dir}")
    return crds


def strict_schema(s):
    """A copy of an OpenAPI v3 schema in which objects refuse undeclared
    fields (unless the schema preserves unknown fields), as the API
    server's strict field validation does."""
    s = copy.deepcopy(s)

    def walk(n):
        if isinstance(n, dict):
            if (
                n.get("type") == "object"
                and "properties" in n
                and "additionalProperties" not in n
                and not n.get("x-kubernetes-preserve-unknown-fields")
            ):
                n["additionalProperties"] = False
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(s)
    return s


def check_metadata(meta, where):
    errs = []
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return [f"{where}: metadata.name is missing"]
    if not NAME_RE.match(meta["name"]):
        errs.append(f"{where}: metadata.name {meta['name']!r} is not a DNS-1123 subdomain")
    for m in ("labels", "annotations"):
        v = meta.get(m, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) and isinstance(y, str) for x, y in v.items()):
            errs.append(f"{where}: metadata.{m} must map strings to strings")
    return errs


def check_cr(doc, where, crds):
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    key = (group, version, doc.get("kind"))
    schema = crds.get(key)
    if schema is None:
        known = ", ".join(sorted(f"{g}/{v} {k}" for g, v, k in crds))
        return [f"{where}: no CRD schema for {group}/{version} {doc.get('kind')} in the repository (known: {known})"]
    errs = check_metadata(doc.get("metadata"), where)
    body = {k: v for k, v in doc.items() if k != "metadata"}
    validator = jsonschema.Draft7Validator({**schema, "properties": {k: v for k, v in schema["properties"].items() if k != "metadata"}})
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        errs.append(f"{where}: {path}: {e.message}")
    return errs


def check_builtin(doc, where):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(root)"
        return [f"{where}: {path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{where}: unknown kind {doc.get('apiVersion')} {doc.get('kind')} ({e})"]
    except kubernetes_validate.InvalidSchemaError as e:
        return [f"{where}: {e}"]
    return []


def dig(doc, path):
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def check_pod_spec(spec, meta, where):
    """The restricted Pod Security Standard (which includes baseline), and the house rules."""
    errs = []
    bad = lambda msg: errs.append(f"{where}: {msg}")  # noqa: E731
    psc = spec.get("securityContext") or {}
    # baseline
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(k):
            bad(f"{k}=true is forbidden")
    for v in spec.get("volumes") or []:
        types = set(v) - {"name"}
        if "hostPath" in types:
            bad(f"volume {v.get('name')!r}: hostPath volumes are forbidden")
        elif not types <= ALLOWED_VOLUMES:
            bad(f"volume {v.get('name')!r}: type {sorted(types - ALLOWED_VOLUMES)} is not allowed")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            bad(f"sysctl {s.get('name')} is not in the safe set")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        bad("windowsOptions.hostProcess=true is forbidden")
    ann = (meta or {}).get("annotations") or {}
    for k, v in ann.items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            v == "runtime/default" or v.startswith("localhost/")
        ):
            bad(f"AppArmor annotation {k}={v} is not allowed")
    # restricted, pod level
    pod_nonroot = psc.get("runAsNonRoot")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad(f"pod seccompProfile.type={pod_seccomp} is not RuntimeDefault or Localhost")
    if psc.get("runAsUser") == 0:
        bad("pod runAsUser=0 (root) is forbidden")
    if pod_nonroot is False:
        bad("pod runAsNonRoot=false is forbidden")

    def check_selinux(sc, who):
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES:
            bad(f"{who}: seLinuxOptions.type={se.get('type')} is not allowed")
        if se.get("user") or se.get("role"):
            bad(f"{who}: seLinuxOptions.user/role must not be set")

    def check_apparmor(sc, who):
        ap = (sc.get("appArmorProfile") or {}).get("type")
        if ap not in (None, "RuntimeDefault", "Localhost"):
            bad(f"{who}: appArmorProfile.type={ap} is not allowed")

    check_selinux(psc, "pod")
    check_apparmor(psc, "pod")

    every = [("initContainers", c) for c in spec.get("initContainers") or []]
    every += [("containers", c) for c in spec.get("containers") or []]
    every += [("ephemeralContainers", c) for c in spec.get("ephemeralContainers") or []]
    if not spec.get("containers"):
        bad("no containers")
    for kind, c in every:
        who = f"{kind} {c.get('name')!r}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad(f"{who}: privileged=true is forbidden")
        if sc.get("procMount") not in (None, "Default"):
            bad(f"{who}: procMount={sc.get('procMount')} is forbidden")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad(f"{who}: hostPort {p['hostPort']} is forbidden")
        check_selinux(sc, who)
        check_apparmor(sc, who)
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad(f"{who}: windowsOptions.hostProcess=true is forbidden")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad(f"{who}: capabilities.drop must include ALL")
        extra = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            bad(f"{who}: capabilities.add {extra} is forbidden (only NET_BIND_SERVICE)")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(f"{who}: allowPrivilegeEscalation must be false")
        nonroot = sc.get("runAsNonRoot", pod_nonroot)
        if nonroot is not True:
            bad(f"{who}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            bad(f"{who}: runAsUser=0 (root) is forbidden")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(f"{who}: seccompProfile must be RuntimeDefault or Localhost (pod or container), is {seccomp}")
        # house rules (kube-prometheus style), for the long-running containers
        if kind == "ephemeralContainers":
            continue
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(f"{who}: readOnlyRootFilesystem must be true")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    bad(f"{who}: resources.{part}.{r} is not set")
        if kind == "containers":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    bad(f"{who}: no {probe}")
    return errs


def check_docs(docs, crds, source):
    errs = []
    namespaces = {}
    for d in docs:
        if d.get("kind") == "Namespace":
            namespaces[dig(d, ("metadata", "name"))] = (dig(d, ("metadata", "labels")) or {})
    for i, d in enumerate(docs):
        where = f"{source}: {d.get('kind')}/{dig(d, ('metadata', 'name'))}"
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            errs.append(f"{source}: document {i} has no apiVersion/kind")
            continue
        group = d["apiVersion"].rpartition("/")[0]
        if group == CR_GROUP:
            errs += check_cr(d, where, crds)
        elif "." in group and not group.endswith(".k8s.io"):
            errs.append(f"{where}: custom resource group {group} has no schema in the repository")
        else:
            errs += check_builtin(d, where)
        path = POD_TEMPLATE_PATHS.get(d["kind"])
        if path is not None:
            spec = dig(d, path)
            meta = dig(d, path[:-1] + ("metadata",)) if len(path) > 1 else d.get("metadata")
            if not isinstance(spec, dict):
                errs.append(f"{where}: no pod spec at {'.'.join(path)}")
                continue
            errs += check_pod_spec(spec, meta, where)
            ns = dig(d, ("metadata", "namespace"))
            labels = namespaces.get(ns)
            if labels is None:
                errs.append(f"{where}: its namespace {ns!r} is not declared in the same manifests (Pod Security labels unknown)")
            elif labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                errs.append(f"{where}: namespace {ns!r} does not enforce the restricted Pod Security Standard "
                            f"(pod-security.kubernetes.io/enforce={labels.get('pod-security.kubernetes.io/enforce')})")
    errs += check_pdbs(docs, source)
    return errs


# Controllers the disruption controller can ask for an expected pod count
# (a PodDisruptionBudget with maxUnavailable or a percentage needs one).
SCALABLE = {"Deployment", "ReplicaSet", "ReplicationController", "StatefulSet"}


def selects(selector, labels):
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        has, val = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and val not in e.get("values", [])) or (op == "NotIn" and val in e.get("values", [])) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def check_pdbs(docs, source):
    """A budget over pods of a controller without a scale subresource (a
    DaemonSet, say) works only with an integer minAvailable."""
    errs = []
    for pdb in (d for d in docs if d.get("kind") == "PodDisruptionBudget"):
        spec = pdb.get("spec") or {}
        where = f"{source}: PodDisruptionBudget/{dig(pdb, ('metadata', 'name'))}"
        owners = [
            d for d in docs
            if d.get("kind") in POD_TEMPLATE_PATHS and d.get("kind") != "Pod"
            and selects(spec.get("selector"), dig(d, POD_TEMPLATE_PATHS[d["kind"]][:-1] + ("metadata", "labels")) or {})
        ]
        if not owners:
            errs.append(f"{where}: selects no pods of these manifests")
        odd = [d["kind"] for d in owners if d["kind"] not in SCALABLE]
        if odd and ("maxUnavailable" in spec or isinstance(spec.get("minAvailable"), str)):
            errs.append(f"{where}: pods of a {odd[0]} (no scale subresource) need an integer minAvailable, "
                        "not maxUnavailable or a percentage")
    return errs


def load(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]


def set_path(doc, path, value):
    """Sets a dotted path (list indexes as numbers, `\\.` for a dot inside
    a key), creating maps as needed; value None deletes the key."""
    keys = [k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path)]
    parts = [int(p) if p.isdigit() else p for p in keys]
    for p in parts[:-1]:
        if isinstance(p, int):
            doc = doc[p]
        else:
            doc = doc.setdefault(p, {})
    if value is None:
        doc.pop(parts[-1], None)
    else:
        doc[parts[-1]] = value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crds", required=True)
    ap.add_argument("--expect-fail", action="store_true")
    ap.add_argument("--mutations")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    crds = load_crds(a.crds)
    failed = 0
    if a.mutations:
        (rendered,) = a.files
        base = load(rendered)
        errs = check_docs(base, crds, rendered)
        if errs:
            print("\n".join(errs))
            print(f"FAIL: {rendered} does not pass, so its mutations prove nothing")
            return 1
        cases = yaml.safe_load(Path(a.mutations).read_text())
        for c in cases:
            docs = copy.deepcopy(base)
            targets = [d for d in docs if d["kind"] == c["kind"]]
            if not targets:
                print(f"FAIL: mutation {c['name']}: no {c['kind']} in {rendered}")
                failed += 1
                continue
            for path, value in c["set"].items():
                set_path(targets[0], path, value)
            errs = check_docs(docs, crds, f"{rendered}[{c['name']}]")
            if any(c["expect"] in e for e in errs):
                print(f"ok: mutation {c['name']} refused: {next(e for e in errs if c['expect'] in e)}")
            else:
                failed += 1
                print(f"FAIL: mutation {c['name']} was not refused with {c['expect']!r}; errors: {errs}")
        print(f"{len(cases) - failed} passed, {failed} failed")
        return 1 if failed else 0
    for f in a.files:
        errs = check_docs(load(f), crds, f)
        if a.expect_fail:
            expects = re.findall(r"^# expect: (.+)$", Path(f).read_text(), re.M)
            if not expects:
                print(f"FAIL: {f} has no '# expect: ...' line")
                failed += 1
            missing = [x for x in expects if not any(x in e for e in errs)]
            if missing or not errs:
                failed += 1
                print(f"FAIL: {f} was not refused with {missing}; errors: {errs}")
            else:
                print(f"ok: {f} refused: " + " | ".join(errs))
        else:
            if errs:
                failed += 1
                print("\n".join(errs))
                print(f"FAIL: {f}")
            else:
                print(f"ok: {f}: {len(load(f))} objects valid")
    print(f"{len(a.files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
