#!/usr/bin/env python3
"""Checks that a rendered tickring manifest is wired together: the paths in
the gateway's config (the generated ConfigMap) are where the DaemonSet
mounts things, and the ports agree.

  gateway_wiring.py RENDERED.yaml...

* `--config F` in the container's args lies in the config volume's mount,
  and the ConfigMap has the key basename(F);
* `ring_dir` is the mount of the volume backed by the claim of the ring
  PersistentVolume, mounted read-only, and that PV is a hostPath of
  /dev/shm/tickring or /dev/hugepages/tickring, ReadOnlyMany;
* `tokens_file` lies in the mount of a Secret volume (key = file name);
* the port of `listen` is the container port named http, which the
  Service, the NetworkPolicy, the probes and the ServiceMonitor use.
Exit 1 naming every mismatch.
"""

import posixpath
import sys
import tomllib

import yaml

RING_DIRS = ("/dev/shm/tickring", "/dev/hugepages/tickring")


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    errs = []
    err = errs.append
    (ds,) = by_kind["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}

    def mount_of(pred):
        for name, v in vols.items():
            if pred(v) and name in mounts:
                return mounts[name], v
        return None, None

    # config
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    m, v = mount_of(lambda v: "configMap" in v)
    if cfg_path is None or m is None or posixpath.dirname(cfg_path) != m["mountPath"]:
        err(f"--config {cfg_path} is not in the ConfigMap mount {m and m['mountPath']}")
        return errs
    cm_name = v["configMap"]["name"]
    (cm,) = [d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == cm_name]
    key = posixpath.basename(cfg_path)
    if key not in cm.get("data", {}):
        err(f"ConfigMap {cm_name} has no key {key}")
        return errs
    gw = tomllib.loads(cm["data"][key])["gateway"]

    # rings
    m, v = mount_of(lambda v: "persistentVolumeClaim" in v)
    if m is None:
        err("no ring volume (persistentVolumeClaim) mounted")
    else:
        if gw.get("ring_dir") != m["mountPath"]:
            err(f"ring_dir {gw.get('ring_dir')} is not the ring mount {m['mountPath']}")
        if not (m.get("readOnly") and v["persistentVolumeClaim"].get("readOnly")):
            err("the ring volume is not mounted read-only (mount and claim)")
        claim = v["persistentVolumeClaim"]["claimName"]
        (pvc,) = [d for d in by_kind["PersistentVolumeClaim"] if d["metadata"]["name"] == claim]
        (pv,) = [d for d in by_kind["PersistentVolume"] if d["metadata"]["name"] == pvc["spec"]["volumeName"]]
        ref = pv["spec"].get("claimRef", {})
        if (ref.get("name"), ref.get("namespace")) != (claim, pvc["metadata"]["namespace"]):
            err(f"PV {pv['metadata']['name']} claimRef {ref} is not the claim {claim}")
        if pv["spec"].get("hostPath", {}).get("path") not in RING_DIRS:
            err(f"PV hostPath {pv['spec'].get('hostPath')} is not one of {RING_DIRS}")
        for o in (pv, pvc):
            if o["spec"].get("accessModes") != ["ReadOnlyMany"]:
                err(f"{o['kind']} access modes {o['spec'].get('accessModes')} are not [ReadOnlyMany]")

    # tokens
    m, v = mount_of(lambda v: "secret" in v)
    tf = gw.get("tokens_file")
    if tf is None or m is None or posixpath.dirname(tf) != m["mountPath"]:
        err(f"tokens_file {tf} is not in the Secret mount {m and m['mountPath']}")
    elif v["secret"].get("items"):
        err("the Secret volume remaps keys (items): tokens_file would not be the key")

    # ports
    port = int(gw.get("listen", "127.0.0.1:8080").rsplit(":", 1)[1])
    named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if named.get("http") != port:
        err(f"listen port {port} is not the container port named http ({named.get('http')})")
    if not gw.get("listen", "").startswith("0.0.0.0:"):
        err(f"listen {gw.get('listen')} is not on all of the pod's addresses")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe, {}).get("httpGet", {})
        if p and p.get("port") not in ("http", port):
            err(f"{probe} uses port {p.get('port')}")
    for svc in by_kind.get("Service", []):
        for p in svc["spec"]["ports"]:
            if p.get("targetPort") not in ("http", port):
                err(f"Service {svc['metadata']['name']} targets port {p.get('targetPort')}")
    for np in by_kind.get("NetworkPolicy", []):
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if p.get("port") not in ("http", port):
                    err(f"NetworkPolicy admits port {p.get('port')}")
    for sm in by_kind.get("ServiceMonitor", []):
        for e in sm["spec"]["endpoints"]:
            if e.get("port") != "http" or e.get("path", "/metrics") != "/metrics":
                err(f"ServiceMonitor endpoint {e} is not http /metrics")
    return errs


def main():
    bad = 0
    for f in sys.argv[1:]:
        errs = check(f)
        for e in errs:
            print(f"{f}: {e}")
        if errs:
            bad += 1
        else:
            print(f"ok: {f}: gateway config, mounts and ports agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
