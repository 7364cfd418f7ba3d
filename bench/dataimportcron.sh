#!/usr/bin/env bash
# DataImportCron benchmark: COUNT crons (default 100) polling one local registry (Debian's
# docker-registry) every POLL seconds (default 10) on the test environment's real kube-apiserver,
# measured over WINDOW seconds (default 60): controller CPU and peak RSS, registry manifest
# requests per poll (from the registry's access log), and the time from a tag moving to the
# DataSource pointing at the new import. Writes bench/out/dataimportcron-results.md.
# PROFILE=debug builds without optimisations (quicker to build; slower CPU numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-100}"
poll="${2:-10}"
window="${3:-60}"
profile="${PROFILE:-release}"
flag=(--release)
[ "$profile" = debug ] && flag=()
mkdir -p bench/out
cargo build -q "${flag[@]}" -p cdi-controller --bin cdi-controller --example bench_dataimportcron
cargo build -q "${flag[@]}" -p cdi-importer --bin cdi-importer
cargo run -q "${flag[@]}" -p cdi-controller --example bench_dataimportcron -- \
  "$count" "$poll" "$window" bench/out/dataimportcron-results.md
