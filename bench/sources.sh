#!/usr/bin/env bash
# bench/sources.sh: `cdictl import` from S3 (moto), GCS (the emulator) and a registry
# (docker-registry) against the same file over plain HTTP from nginx, in the same run; and the
# registry import against upstream's two passes (the layer extracted to a scratch file, then
# `qemu-img convert`).
#
# moto and the GCS emulator are Python servers: they serve far slower than nginx, so each
# object-store row also times `curl -o /dev/null` of the same object from the same server
# (the transport floor), and the ratio that matters is ours / that floor.
#
# Environment: BENCH_REPS (default 3), BENCH_CORPUS/VIRT_MIB/DATA_MIB as run.sh, CDICTL (skip
# the build). Exit status: 0 when every output is identical to disk.raw.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
LOG=$OUT/sources.log
WORK=$OUT/sources
REPS=${BENCH_REPS:-3}
FILES=(disk.qcow2 disk.raw.gz)

for t in nginx curl cmp awk python3 moto_server gcp-storage-emulator docker-registry qemu-img tar; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (see .ci/run for how CI installs them)"
done
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"
if [[ ! -f $CORPUS/.bench-stamp ]]; then
  say "no corpus yet: generating it with run.sh's settings"
  BENCH_REPS=1 BENCH_FILES=disk.raw "$BENCH_DIR/run.sh" >/dev/null
fi
if [[ -z ${CDICTL:-} ]]; then
  say "building cdictl (release)"
  (cd "$ROOT" && cargo build --release -p cdi-cli) || die "cargo build failed"
fi
CDICTL=${CDICTL:-$ROOT/target/release/cdictl}
sum_of() { awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$CORPUS/SHA256SUMS"; }

# ------------------------------------------------------------------------------- servers
rm -rf "$WORK"
mkdir -p "$WORK"/{nginx,registry,scratch}
: >"$LOG"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $WORK/nginx/nginx.pid ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK/scratch" "$OUT/ours.raw" "$OUT/.ours.raw.cdi-partial" "$OUT/ref.raw" "$OUT/.time"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; die "$2 did not listen on $1"; }

HTTP_PORT=$(free_port) S3_PORT=$(free_port) GCS_PORT=$(free_port) REG_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon on;
user root root;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$HTTP_PORT; root $CORPUS; }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || die "nginx did not start"
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
gcp-storage-emulator start --host=127.0.0.1 --port="$GCS_PORT" --in-memory >"$WORK/gcs.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/registry/config.yml" <<CONF
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $WORK/registry/storage } }
http: { addr: 127.0.0.1:$REG_PORT }
CONF
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP_PORT" nginx
wait_port "$S3_PORT" moto
wait_port "$GCS_PORT" gcp-storage-emulator
wait_port "$REG_PORT" docker-registry

say "seeding S3, GCS and the registry with ${FILES[*]}"
for f in "${FILES[@]}"; do
  python3 "$ROOT/testdata/python/objectstore.py" s3-put "http://127.0.0.1:$S3_PORT" AKID secret bench "$f" "$CORPUS/$f"
  python3 "$ROOT/testdata/python/objectstore.py" gcs-put "http://127.0.0.1:$GCS_PORT" bench "$f" "$CORPUS/$f"
done
LAYER=$(python3 "$BENCH_DIR/push_image.py" "127.0.0.1:$REG_PORT" bench/disk qcow2 "$CORPUS/disk.qcow2")

# ------------------------------------------------------------------------------- run
VIRT_BYTES=$(stat -c %s "$CORPUS/disk.raw")
printf 'file,rep,who,wall_s,user_s,sys_s,rss_kib\n' >"$OUT/sources-runs.csv"
export AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=secret
FAILED=0
ROWS=()
REG_ROW=""
for f in "${FILES[@]}"; do
  sum=$(sum_of "$f")
  cat "$CORPUS/$f" "$CORPUS/disk.raw" >/dev/null
  declare -A walls=() rss=()
  whos=(http s3 s3-floor gcs gcs-floor)
  [[ $f == disk.qcow2 ]] && whos+=(registry two-pass)
  identical=yes
  one() { # one WHO REP
    local who=$1 rep=$2 out=$OUT/ours.raw
    rm -f "$OUT/ours.raw" "$OUT/ref.raw"
    case $who in
      http) timed /dev/null "$CDICTL" import "http://127.0.0.1:$HTTP_PORT/$f" "$out" --checksum "sha256:$sum" --progress none ;;
      s3) timed /dev/null "$CDICTL" import "s3://bench/$f" "$out" --endpoint "http://127.0.0.1:$S3_PORT" --checksum "sha256:$sum" --progress none ;;
      gcs) timed /dev/null "$CDICTL" import "gs://bench/$f" "$out" --endpoint "http://127.0.0.1:$GCS_PORT" --checksum "sha256:$sum" --progress none ;;
      s3-floor)
        out=""
        timed /dev/null curl -fsS -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user AKID:secret "http://127.0.0.1:$S3_PORT/bench/$f" ;;
      gcs-floor)
        out=""
        timed /dev/null curl -fsS -o /dev/null "http://127.0.0.1:$GCS_PORT/bench/$f" ;;
      registry) timed /dev/null "$CDICTL" import "docker://127.0.0.1:$REG_PORT/bench/disk:qcow2" "$out" --insecure --progress none ;;
      two-pass)
        # Upstream: the layer is pulled and its disk file extracted to scratch, then converted.
        out=$OUT/ref.raw
        timed /dev/null bash -c "set -o pipefail; rm -rf '$WORK/scratch' && mkdir -p '$WORK/scratch' &&
          curl -fsS 'http://127.0.0.1:$REG_PORT/v2/bench/disk/blobs/$LAYER' | tar -xzf - -C '$WORK/scratch' &&
          sync -f '$WORK/scratch/disk/disk.qcow2' &&
          qemu-img convert -t writeback -O raw '$WORK/scratch/disk/disk.qcow2' '$out'" ;;
    esac || return 1
    walls[$who]+="$T_WALL "
    ((T_RSS > ${rss[$who]:-0})) && rss[$who]=$T_RSS
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$f" "$rep" "$who" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" >>"$OUT/sources-runs.csv"
    if [[ -n $out ]] && ((rep == 1)); then
      cmp -s -n "$VIRT_BYTES" "$out" "$CORPUS/disk.raw" || { identical=no; say "$who $f: output differs"; }
    fi
    rm -f "$OUT/ours.raw" "$OUT/ref.raw"
  }
  for ((rep = 1; rep <= REPS; rep++)); do
    order=("${whos[@]}")
    ((rep % 2)) || mapfile -t order < <(printf '%s\n' "${whos[@]}" | tac)
    for who in "${order[@]}"; do
      one "$who" "$rep" || { say "FAILED: $who $f (rep $rep); see $LOG"; FAILED=1; }
    done
    say "$(printf '%-14s rep %d/%d done' "$f" "$rep" "$REPS")"
  done
  [[ $identical == yes ]] || FAILED=1
  # shellcheck disable=SC2086
  m() { median ${walls[$1]}; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  h=$(m http) s=$(m s3) sf=$(m s3-floor) g=$(m gcs) gf=$(m gcs-floor)
  ROWS+=("| $f | $h | $s | $(ratio "$s" "$h")× | $sf | $(ratio "$s" "$sf")× | $g | $(ratio "$g" "$h")× | $gf | $(ratio "$g" "$gf")× | $(mib "${rss[http]}") / $(mib "${rss[s3]}") / $(mib "${rss[gcs]}") | $identical |")
  if [[ $f == disk.qcow2 ]]; then
    r=$(m registry) t=$(m two-pass)
    REG_ROW="| $f | $r | $t | $(awk -v a="$t" -v b="$r" 'BEGIN { printf "%.2f", a / b }')× | ≥ 2× | $(mib "${rss[registry]}") | $(mib "${rss[two-pass]}") | $identical |"
  fi
done

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# Remote sources vs. HTTP import of the same file"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, corpus $(cat "$CORPUS/.bench-stamp"), $REPS repetitions, alternating, page cache warm;"
  echo "every import verifies the file's sha256 (and the object's own digest) and writes a sparse, synced image. Medians in seconds."
  echo
  echo "| file | http (s) | s3 (s) | s3/http | s3 curl floor (s) | s3/floor | gcs (s) | gcs/http | gcs curl floor (s) | gcs/floor | RSS http / s3 / gcs (MiB) | identical |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| registry (tar+gzip containerDisk) | ours (s) | two-pass (s) | two-pass / ours | target | ours RSS (MiB) | two-pass peak RSS (MiB) | identical |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  echo "$REG_ROW"
  echo
  echo "- http: nginx on 127.0.0.1; s3: moto_server; gcs: gcp-storage-emulator; registry: docker-registry, plain HTTP."
  echo "- curl floor: \`curl -o /dev/null\` of the same object from the same server: what that server's transfer alone costs."
  echo "- two-pass: \`curl blob | tar -xz\` into a scratch directory (synced), then \`qemu-img convert -t writeback -O raw\`, as upstream's importer does through scratch space."
  echo "Every run: $OUT/sources-runs.csv; stderr: $LOG."
} >"$OUT/sources-results.md"
cat "$OUT/sources-results.md"
((FAILED == 0)) || { say "some runs failed or produced wrong output"; exit 1; }
