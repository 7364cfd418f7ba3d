#!/usr/bin/env bash
# bench/http.sh: cdi-importer over loopback HTTP and HTTPS vs. a local-file import.
#
# Serves the benchmark corpus with nginx on 127.0.0.1 (plain and TLS, with a CA made here) and,
# for each corpus file, runs alternately:
#   local: cdictl import FILE out.raw --checksum sha256:…           (the data path alone)
#   http:  cdi-importer with IMPORTER_ENDPOINT=http://127.0.0.1:P/FILE, IMPORTER_CHECKSUM=…
#   https: the same over TLS, trusting the CA through IMPORTER_CERT_DIR
# and reports the median wall times, the ratios http/local and https/local (target ≤ 1.15×),
# the importer's peak RSS and whether every output is identical to disk.raw.
#
# Uses the corpus made by run.sh (run it first, or this script makes it the same way).
# Environment: BENCH_REPS (default 3), BENCH_FILES, CDICTL, CDI_IMPORTER (skip the builds),
# BENCH_CORPUS/VIRT_MIB/DATA_MIB as run.sh. Exit status as run.sh.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
LOG=$OUT/http.log
WORK=$OUT/http
REPS=${BENCH_REPS:-3}
TARGET=1.15
RSS_LIMIT_MIB=256

for t in nginx openssl cmp awk sort stat curl; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (Debian: nginx-light openssl diffutils curl)"
done
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, got '$REPS'"

if [[ ! -f $CORPUS/.bench-stamp ]]; then
  say "no corpus yet: generating it with run.sh's settings (BENCH_FILES=disk.raw run once)"
  BENCH_REPS=1 BENCH_FILES=disk.raw "$BENCH_DIR/run.sh" >/dev/null
fi
ALL_FILES=(disk.qcow2 disk-c.qcow2 disk.raw.gz disk.qcow2.gz disk.raw.xz disk.qcow2.xz disk.raw.zst disk.raw)
if [[ -n ${BENCH_FILES:-} ]]; then read -r -a FILES <<<"$BENCH_FILES"; else FILES=("${ALL_FILES[@]}"); fi
sum_of() { awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$CORPUS/SHA256SUMS"; }

if [[ -z ${CDICTL:-} || -z ${CDI_IMPORTER:-} ]]; then
  say "building cdictl and cdi-importer (release)"
  (cd "$ROOT" && cargo build --release -p cdi-cli -p cdi-importer) || die "cargo build failed"
fi
CDICTL=${CDICTL:-$ROOT/target/release/cdictl}
CDI_IMPORTER=${CDI_IMPORTER:-$ROOT/target/release/cdi-importer}
[[ -x $CDICTL && -x $CDI_IMPORTER ]] || die "missing $CDICTL or $CDI_IMPORTER"

# ------------------------------------------------------------------------------- nginx
rm -rf "$WORK"
mkdir -p "$WORK"/{nginx,pod/data,pod/dev,pod/certs}
: >"$LOG"
HTTP_PORT=$(free_port)
HTTPS_PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>>"$LOG"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>>"$LOG"
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/san.ext" -out "$WORK/server.crt" 2>>"$LOG"
cp "$WORK/ca.crt" "$WORK/pod/certs/ca.crt"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon on;
user root root;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx/tmp;
  ssl_protocols TLSv1.3;
  server {
    listen 127.0.0.1:$HTTP_PORT;
    listen 127.0.0.1:$HTTPS_PORT ssl;
    ssl_certificate $WORK/server.crt;
    ssl_certificate_key $WORK/server.key;
    root $CORPUS;
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || die "nginx did not start; see $WORK/nginx/error.log"
stop_nginx() { [[ -f $WORK/nginx/nginx.pid ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; }
# CPU seconds nginx's workers have used so far (utime + stime of the master's children).
nginx_cpu() {
  local ticks=0 pid
  for pid in $(pgrep -P "$(cat "$WORK/nginx/nginx.pid")"); do
    ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}
OURS_OUT=$OUT/ours.raw
clean_outputs() { rm -f "$OURS_OUT" "$OUT/.ours.raw.cdi-partial" "$WORK/pod/data/disk.img" "$WORK/pod/data/".disk.img*; }
trap 'stop_nginx; clean_outputs; rm -f "$OUT/.time"' EXIT
for i in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/SHA256SUMS" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null --cacert "$WORK/ca.crt" "https://127.0.0.1:$HTTPS_PORT/SHA256SUMS" ||
  die "nginx does not serve the corpus over TLS; see $WORK/nginx/error.log"

# ------------------------------------------------------------------------------- run
# The volume size the importer is told (CDI would inflate the request by the overhead): twice
# the virtual size, so every image fits.
VIRT_BYTES=$(stat -c %s "$CORPUS/disk.raw")
IMAGE_SIZE=$((VIRT_BYTES * 2))
printf 'file,rep,who,wall_s,user_s,sys_s,rss_kib\n' >"$OUT/http-runs.csv"
FAILED=0
ROWS=()
for f in "${FILES[@]}"; do
  sum=$(sum_of "$f")
  [[ $sum =~ ^[0-9a-f]{64}$ ]] || die "no sha256 for $f in $CORPUS/SHA256SUMS"
  cat "$CORPUS/$f" "$CORPUS/disk.raw" >/dev/null
  declare -A walls=([local]="" [http]="" [https]="" [curl-http]="" [curl-https]="")
  declare -A cpus=([http]="" [https]="")
  rss_http=0 identical=yes

  one() { # one WHO REP
    local who=$1 rep=$2 out
    clean_outputs
    case $who in
      curl-http)
        timed /dev/null curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/$f" || return 1
        walls[$who]+="$T_WALL "
        return 0 ;;
      curl-https)
        timed /dev/null curl -fsS -o /dev/null --cacert "$WORK/ca.crt" "https://127.0.0.1:$HTTPS_PORT/$f" || return 1
        walls[$who]+="$T_WALL "
        return 0 ;;
      local)
        timed /dev/null "$CDICTL" import "$CORPUS/$f" "$OURS_OUT" --checksum "sha256:$sum" --progress none || return 1
        out=$OURS_OUT ;;
      http | https)
        local url=http://127.0.0.1:$HTTP_PORT/$f certs=()
        [[ $who == https ]] && url=https://127.0.0.1:$HTTPS_PORT/$f certs=(IMPORTER_CERT_DIR=/certs)
        local nginx_before
        nginx_before=$(nginx_cpu)
        timed /dev/null env -i PATH="$PATH" CDI_ROOT="$WORK/pod" CDI_METRICS_ADDR=127.0.0.1:0 \
          IMPORTER_SOURCE=http IMPORTER_ENDPOINT="$url" IMPORTER_CONTENTTYPE=kubevirt \
          IMPORTER_IMAGE_SIZE="$IMAGE_SIZE" IMPORTER_CHECKSUM="sha256:$sum" OWNER_UID=bench \
          "${certs[@]}" "$CDI_IMPORTER" || { cat "$WORK/pod/dev/termination-log" >>"$LOG" 2>/dev/null; return 1; }
        out=$WORK/pod/data/disk.img
        # Both sides of the transfer: the importer's CPU and nginx's during the run.
        cpus[$who]+="$(awk -v u="$T_USER" -v s="$T_SYS" -v a="$nginx_before" -v b="$(nginx_cpu)" \
          'BEGIN { printf "%.3f", u + s + b - a }') "
        ((T_RSS > rss_http)) && rss_http=$T_RSS ;;
    esac
    walls[$who]+="$T_WALL "
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$f" "$rep" "$who" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" >>"$OUT/http-runs.csv"
    if ((rep == 1)); then
      # The importer grows the image to the volume's usable size; compare the image's part.
      cmp -s -n "$VIRT_BYTES" "$out" "$CORPUS/disk.raw" || identical=no
    fi
    clean_outputs
  }

  failed=0
  for ((rep = 1; rep <= REPS; rep++)); do
    order=(local http https curl-http curl-https)
    ((rep % 2)) || order=(curl-https curl-http https http local)
    for who in "${order[@]}"; do
      one "$who" "$rep" || { say "FAILED: $who $f (rep $rep); see $LOG"; failed=1; break 2; }
    done
    say "$(printf '%-14s rep %d/%d done' "$f" "$rep" "$REPS")"
  done
  if ((failed)); then
    FAILED=1
    ROWS+=("| $f | run failed | | | | | ≤ ${TARGET}× | **FAIL** (run) | | | | | | |")
    continue
  fi
  # shellcheck disable=SC2086
  lm=$(median ${walls[local]}) hm=$(median ${walls[http]}) sm=$(median ${walls[https]})
  ch=$(median ${walls[curl-http]}) cs=$(median ${walls[curl-https]})
  hr=$(awk -v a="$hm" -v b="$lm" 'BEGIN { printf "%.2f", a / b }')
  sr=$(awk -v a="$sm" -v b="$lm" 'BEGIN { printf "%.2f", a / b }')
  # The fastest these runs could have been on this machine: all the CPU they used (importer
  # and nginx), spread perfectly over every core, as a ratio to the local import.
  # shellcheck disable=SC2086
  hf=$(awk -v c="$(median ${cpus[http]})" -v n="$(nproc)" -v b="$lm" 'BEGIN { printf "%.2f", c / n / b }')
  # shellcheck disable=SC2086
  sf=$(awk -v c="$(median ${cpus[https]})" -v n="$(nproc)" -v b="$lm" 'BEGIN { printf "%.2f", c / n / b }')
  rss=$(mib "$rss_http")
  why=()
  awk -v r="$hr" -v s="$sr" -v t="$TARGET" 'BEGIN { exit !(r > t || s > t) }' && why+=(time)
  ((rss > RSS_LIMIT_MIB)) && why+=(RSS)
  [[ $identical == yes ]] || { why+=(output); FAILED=1; }
  verdict=pass
  ((${#why[@]} == 0)) || verdict="**FAIL** (${why[*]})"
  ROWS+=("| $f | $lm | $hm | $sm | ${hr}× | ${sr}× | ≤ ${TARGET}× | $verdict | $rss | $identical | $ch | $cs | ${hf}× | ${sf}× |")
done

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# cdi-importer over loopback HTTP(S) vs. local import"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, corpus $(cat "$CORPUS/.bench-stamp")," \
    "nginx $(nginx -v 2>&1 | sed 's/.*\///') on 127.0.0.1 (sendfile, TLS 1.3), $REPS repetitions, alternating, page cache warm."
  echo "Every run verifies the source's sha256 and writes a sparse, synced image; medians in seconds."
  echo
  echo "| file | local (s) | http (s) | https (s) | http/local | https/local | target | pass/fail | importer peak RSS (MiB) | output identical | curl http (s) | curl https (s) | http CPU floor | https CPU floor |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "curl columns: \`curl -o /dev/null\` of the same URL, the transport alone (nginx and the client share the $(nproc) CPUs)."
  echo "CPU floor: (importer CPU + nginx CPU during the run) / $(nproc) CPUs / local time, medians: the ratio the run could reach"
  echo "with perfect parallelism; where it is above the target, the target cannot be met on this machine."
  echo "Every run: $OUT/http-runs.csv; stderr of all runs: $LOG."
} >"$OUT/http-results.md"
echo
cat "$OUT/http-results.md"
((FAILED == 0)) || { say "some runs failed or produced wrong output"; exit 1; }
