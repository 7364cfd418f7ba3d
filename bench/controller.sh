#!/usr/bin/env bash
# Controller benchmark: COUNT DataVolumes (default 1000) created at once against the test
# environment's real kube-apiserver; time until each importer pod exists (p50/p90/p99), and the
# controller's CPU time and peak RSS. Writes bench/out/controller-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-1000}"
mkdir -p bench/out
cargo build -q --release -p cdi-controller --bin cdi-controller --example bench_dvs
cargo run -q --release -p cdi-controller --example bench_dvs -- "$count" bench/out/controller-results.md
