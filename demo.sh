#!/usr/bin/env bash
# The main job, end to end: generate a sample image (a gzip-compressed qcow2), import it with
# cdictl into a sparse raw disk with checksum verification, and check the imported content.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-target/demo}
cargo build -q --release -p cdi-testdata -p cdi-cli --bins
target/release/make-sample "$out" >/dev/null
rm -f "$out/disk.img"
target/release/cdictl import "$out/sample.qcow2.gz" "$out/disk.img" \
  --checksum "$(cat "$out/sample.qcow2.gz.sha256")" --size 512Mi --image-sha256 --progress none \
  | tee "$out/result.txt"
want=$(cat "$out/disk.sha256")
# The image was grown to --size; its first 256 MiB must be the sample disk, the rest zeros.
got=$(head -c $((256 << 20)) "$out/disk.img" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && echo "content verified: sha256 of the first 256 MiB is $got"
ls -ls "$out/disk.img"
