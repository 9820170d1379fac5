#!/usr/bin/env python3
"""Writes a one-layer OCI image (image-spec v1.0) from a root file system
directory, with no registry and no container engine:

  oci_image.py --rootfs DIR --layout OUT_DIR --archive OUT.tar --tag TAG \
      --user 65532:65532 --entrypoint /usr/bin/tickring --entrypoint gateway \
      --cmd --config --cmd /etc/... --port 8080/tcp --label k=v ...

The layer is a reproducible tar (sorted names, owner 0:0, every mtime
SOURCE_DATE_EPOCH) compressed with gzip (no name, mtime 0), so the same
inputs give the same digests. OUT_DIR becomes an OCI image layout
(oci-layout, index.json, blobs/sha256/...) whose index names the image
TAG (org.opencontainers.image.ref.name); OUT.tar is the same layout as a
tar archive (what `skopeo copy oci-archive:OUT.tar:TAG ...` reads).
Prints the manifest digest.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def reproducible_tar(paths, base, epoch, out):
    """Tars `paths` (relative to base, already sorted) into the file object
    out with fixed owners and times."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            full = os.path.join(base, rel)
            info = tar.gettarinfo(full, arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            info.pax_headers = {}
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def walk_sorted(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            out.append(rel)
        for f in sorted(filenames):
            out.append(os.path.normpath(os.path.join(rel, f)))
    return sorted(out)


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, digest), "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--layout", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--port", action="append", default=[])
    ap.add_argument("--label", action="append", default=[])
    a = ap.parse_args()

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    if os.path.exists(a.layout):
        shutil.rmtree(a.layout)
    os.makedirs(a.layout)

    raw = io.BytesIO()
    reproducible_tar(walk_sorted(a.rootfs), a.rootfs, epoch, raw)
    raw = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as g:
        g.write(raw)
    layer = blob(a.layout, gz.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()

    labels = dict(kv.split("=", 1) for kv in a.label)
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Entrypoint": a.entrypoint,
            "Cmd": a.cmd,
            "Env": a.env,
            "WorkingDir": "/",
            "ExposedPorts": {p: {} for p in a.port},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "packaging/oci/build.sh"}],
    }
    cfg = blob(a.layout, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, **cfg},
        "layers": [{"mediaType": MT_LAYER, **layer}],
        "annotations": {"org.opencontainers.image.created": created, **labels},
    }
    man = blob(a.layout, canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                **man,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": a.tag},
            }
        ],
    }
    with open(os.path.join(a.layout, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(a.layout, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))

    tmp = a.archive + ".part"
    with open(tmp, "wb") as out:
        reproducible_tar(walk_sorted(a.layout), a.layout, epoch, out)
    os.replace(tmp, a.archive)
    print(man["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
