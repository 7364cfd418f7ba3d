"""Pushes a containerDisk image to a registry (plain HTTP, no auth) for bench/sources.sh:
one tar+gzip layer holding FILE as disk/NAME, an OCI config and manifest.

    push_image.py REGISTRY REPOSITORY TAG FILE    -> prints the layer's digest
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request


def put_blob(registry, repository, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(
        f"http://{registry}/v2/{repository}/blobs/uploads/", method="POST", data=b""
    )
    location = urllib.request.urlopen(start).headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    upload = urllib.request.Request(
        f"{location}{sep}digest={digest}",
        method="PUT",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    urllib.request.urlopen(upload).read()
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main(registry, repository, tag, path):
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(path, arcname="disk/" + os.path.basename(path))
    layer = gzip.compress(tar_bytes.getvalue(), compresslevel=1)
    layer_desc = put_blob(
        registry, repository, layer, "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_desc = put_blob(
        registry, repository, config, "application/vnd.oci.image.config.v1+json"
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="PUT",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    urllib.request.urlopen(request).read()
    print(layer_desc["digest"])


if __name__ == "__main__":
    main(*sys.argv[1:])
