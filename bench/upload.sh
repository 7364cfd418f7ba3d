#!/usr/bin/env bash
# bench/upload.sh: uploads through cdi-uploadproxy and cdi-uploadserver over loopback TLS vs.
# a local-file import of the same file, in the same run.
#
# Starts the test control plane with a claim and an (unrun) upload pod whose stand-in port
# annotation points at 127.0.0.1:UPLOAD_PORT (controller/examples/bench_upload_env.rs), then the
# real cdi-uploadproxy (release) against it. For each corpus file, alternately, BENCH_REPS times:
#   local:  cdictl import FILE out.raw --checksum sha256:…       (the data path alone)
#   tus:    a fresh cdi-uploadserver on UPLOAD_PORT, and cdictl upload --url https://proxy FILE
#           --token T --ca CA --checksum sha256:… (resumable: one streamed PATCH, then the last MiB)
#   post:   the same server, one plain `curl --http1.1 -T FILE -X POST …/v1beta1/upload` through
#           the proxy (post-h2: the same with --http2, curl's default against the proxy)
#   direct: the same HTTP/1.1 POST straight to the upload server with the proxy's client cert
#   sink:   curl -T FILE to an nginx TLS server that discards it (the transport alone)
# Wall time runs from the client's start to the upload server's exit. Reports median times,
# tus/local and post/local against the target (≤ 1.3×), peak RSS of client, proxy and server,
# the CPU floor, and checks that every uploaded disk.img is identical to disk.raw.
#
# Environment: BENCH_REPS (default 3), BENCH_FILES, BENCH_TUS_CHUNK (cdictl --chunk-size;
# default cdictl's), CDICTL, CDI_UPLOADSERVER, CDI_UPLOADPROXY, BENCH_UPLOAD_ENV (skip the
# builds), BENCH_CORPUS/VIRT_MIB/DATA_MIB as run.sh. Exit status as run.sh.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
LOG=$OUT/upload.log
WORK=$OUT/upload
REPS=${BENCH_REPS:-3}
TARGET=1.3
TUS_CHUNK=${BENCH_TUS_CHUNK:-}

for t in nginx openssl curl cmp awk sort stat ss pgrep python3; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (Debian: nginx-light openssl curl diffutils iproute2 procps python3)"
done
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, got '$REPS'"

if [[ ! -f $CORPUS/.bench-stamp ]]; then
  say "no corpus yet: generating it with run.sh's settings (BENCH_FILES=disk.raw run once)"
  BENCH_REPS=1 BENCH_FILES=disk.raw "$BENCH_DIR/run.sh" >/dev/null
fi
ALL_FILES=(disk.qcow2 disk-c.qcow2 disk.raw.gz disk.qcow2.gz disk.raw.xz disk.qcow2.xz disk.raw.zst disk.raw)
if [[ -n ${BENCH_FILES:-} ]]; then
  read -r -a FILES <<<"$BENCH_FILES"
  for f in "${FILES[@]}"; do
    [[ " ${ALL_FILES[*]} " == *" $f "* ]] || die "unknown file in BENCH_FILES: $f (known: ${ALL_FILES[*]})"
  done
else
  FILES=("${ALL_FILES[@]}")
fi
sum_of() { awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$CORPUS/SHA256SUMS"; }

# ------------------------------------------------------------------------------- build
if [[ -z ${CDICTL:-} || -z ${CDI_UPLOADSERVER:-} || -z ${CDI_UPLOADPROXY:-} || -z ${BENCH_UPLOAD_ENV:-} ]]; then
  say "building cdictl, cdi-uploadserver, cdi-uploadproxy and the bench_upload_env example (release)"
  (cd "$ROOT" && cargo build --release -p cdi-cli -p cdi-uploadserver -p cdi-uploadproxy &&
    cargo build --release -p cdi-controller --example bench_upload_env) || die "cargo build failed"
fi
CDICTL=${CDICTL:-$ROOT/target/release/cdictl}
CDI_UPLOADSERVER=${CDI_UPLOADSERVER:-$ROOT/target/release/cdi-uploadserver}
CDI_UPLOADPROXY=${CDI_UPLOADPROXY:-$ROOT/target/release/cdi-uploadproxy}
BENCH_UPLOAD_ENV=${BENCH_UPLOAD_ENV:-$ROOT/target/release/examples/bench_upload_env}
for b in "$CDICTL" "$CDI_UPLOADSERVER" "$CDI_UPLOADPROXY" "$BENCH_UPLOAD_ENV"; do
  [[ -x $b ]] || die "missing $b"
done

# ------------------------------------------------------------------------------- processes
rm -rf "$WORK"
mkdir -p "$WORK"/{env,nginx,pod/data,pod/dev,pod/etc/tls}
: >"$LOG"
ENV_PID='' PROXY_PID='' SERVER_PID=''
# The upload server runs under GNU time: stop the server (time's child), then time.
stop_server() {
  stop_timed "$SERVER_PID"
  SERVER_PID=''
}
stop_nginx() {
  if [[ -f $WORK/nginx/nginx.pid ]]; then kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; fi
}
OURS_OUT=$OUT/ours.raw
IMAGE=$WORK/pod/data/disk.img
clean_outputs() { rm -f "$OURS_OUT" "$OUT/.ours.raw.cdi-partial" "$WORK/pod/data/"* "$WORK/pod/data/".disk.img* "$WORK/pod/dev/termination-log"; }
cleanup() { stop_server; stop_timed "$PROXY_PID"; stop_timed "$ENV_PID"; stop_nginx; clean_outputs; rm -f "$OUT/.time"; }
trap cleanup EXIT

UPLOAD_PORT=$(free_port)
say "starting the test control plane (bench_upload_env; builds Kubernetes on first use, ~6 min)"
"$BENCH_UPLOAD_ENV" "$WORK/env" "$UPLOAD_PORT" </dev/null 2>"$WORK/env.log" &
ENV_PID=$!
t0=$EPOCHREALTIME
until [[ -f $WORK/env/env.sh ]]; do
  kill -0 "$ENV_PID" 2>/dev/null || { tail -n 20 "$WORK/env.log" >&2; die "bench_upload_env exited; see $WORK/env.log"; }
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a > 1800) }' && die "the control plane was not ready in 30 min"
  sleep 0.2
done
# shellcheck source=/dev/null
. "$WORK/env/env.sh"
E=$WORK/env
TOKEN=$(cat "$E/token")
say "control plane ready in $(elapsed "$t0") s; claim $NAMESPACE/$CLAIM, upload server port $UPLOAD_PORT"

PROXY_PORT=$(free_port)
RUST_LOG=warn "$CDI_UPLOADPROXY" --listen-address 127.0.0.1 --listen-port "$PROXY_PORT" \
  --tls-cert "$E/proxy.crt" --tls-key "$E/proxy.key" \
  --client-cert "$E/client.crt" --client-key "$E/client.key" --server-ca "$E/server-ca.crt" \
  --token-public-key "$E/token.pub" --kubeconfig "$KUBECONFIG" </dev/null 2>"$WORK/proxy.log" &
PROXY_PID=$!
PROXY_URL=https://127.0.0.1:$PROXY_PORT
for _ in $(seq 100); do curl -fsS -o /dev/null --cacert "$E/proxy-ca.crt" "$PROXY_URL/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null --cacert "$E/proxy-ca.crt" "$PROXY_URL/readyz" || die "cdi-uploadproxy is not ready; see $WORK/proxy.log"
CLK=$(getconf CLK_TCK)
# CPU seconds (utime + stime) process $1 has used so far.
cpu_of() { awk -v hz="$CLK" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"; }
# Resets the proxy's peak RSS (VmHWM) to its current RSS, so each upload's peak is its own.
CAN_RESET=yes
reset_hwm() {
  if [[ $CAN_RESET == yes ]] && ! { echo 5 >"/proc/$PROXY_PID/clear_refs"; } 2>/dev/null; then CAN_RESET=no; fi
}
# The last of the space-separated values in $1.
last() { awk '{ print $NF }' <<<"$1"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# The TLS sink: nginx answering every request without keeping its body.
SINK_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon on;
user root root;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 16; }
http {
  access_log off;
  client_max_body_size 0;
  client_body_temp_path $WORK/nginx/tmp;
  ssl_protocols TLSv1.3;
  server {
    listen 127.0.0.1:$SINK_PORT ssl;
    ssl_certificate $E/proxy.crt;
    ssl_certificate_key $E/proxy.key;
    location / { return 204; }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || die "nginx did not start; see $WORK/nginx/error.log"
for _ in $(seq 50); do listening "$SINK_PORT" && break; sleep 0.1; done

# The upload pod's mounts and the server's environment (CDI's contract; CDI_ROOT stands in
# for the container's root). The volume is exactly the virtual size: disk.img must equal
# disk.raw byte for byte, length included.
cp "$E/server.crt" "$WORK/pod/etc/tls/tls.crt"
cp "$E/server.key" "$WORK/pod/etc/tls/tls.key"
cp "$E/client-ca.crt" "$WORK/pod/etc/tls/ca.crt"
VIRT_BYTES=$(stat -c %s "$CORPUS/disk.raw")
start_server() {
  rm -f "$WORK/server.time"
  /usr/bin/time -f '%M %U %S' -o "$WORK/server.time" env -i PATH="$PATH" CDI_ROOT="$WORK/pod" \
    RUST_LOG=warn TLS_KEY_FILE=/etc/tls/tls.key TLS_CERT_FILE=/etc/tls/tls.crt \
    CLIENT_CERT_FILE=/etc/tls/ca.crt CLIENT_NAME="$CLIENT_NAME" LISTEN_ADDRESS=127.0.0.1 \
    LISTEN_PORT="$UPLOAD_PORT" UPLOAD_IMAGE_SIZE="$VIRT_BYTES" FILESYSTEM_OVERHEAD=0 \
    OWNER_UID=bench "$CDI_UPLOADSERVER" </dev/null 2>>"$LOG" &
  SERVER_PID=$!
  await_listening "$UPLOAD_PORT" "$SERVER_PID" || { say "cdi-uploadserver did not listen on $UPLOAD_PORT; see $LOG"; return 1; }
}

# ------------------------------------------------------------------------------- run
printf 'file,rep,who,wall_s,client_cpu_s,proxy_cpu_s,server_cpu_s,client_rss_kib,proxy_rss_kib,server_rss_kib\n' >"$OUT/upload-runs.csv"
FAILED=0
ROWS=()
FLOORS=()
chunk_args=()
[[ -n $TUS_CHUNK ]] && chunk_args=(--chunk-size "$TUS_CHUNK")
for f in "${FILES[@]}"; do
  src=$CORPUS/$f
  sum=$(sum_of "$f")
  [[ $sum =~ ^[0-9a-f]{64}$ ]] || die "no sha256 for $f in $CORPUS/SHA256SUMS"
  # RFC 9530 form of the same sha256, for the POSTs (X-CDI-Checksum would do as well).
  repr="sha-256=:$(python3 -c 'import base64, sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$sum"):"
  cat "$src" "$CORPUS/disk.raw" >/dev/null
  declare -A walls=() cpus=() rss_c=() rss_p=() rss_s=()
  identical=yes

  # One upload through $who; sets T_WALL and the CPU/RSS of the three processes.
  upload() {
    local who=$1 rep=$2 crc=0 src_rc=0 proxy_before server_cpu server_rss t0 t1
    start_server || return 1
    reset_hwm
    proxy_before=$(cpu_of "$PROXY_PID")
    printf '\n$ %s %s (rep %s)\n' "$who" "$f" "$rep" >>"$LOG"
    t0=$EPOCHREALTIME
    case $who in
      tus)
        rm -rf "$WORK/state"
        XDG_STATE_HOME=$WORK/state /usr/bin/time -f '%M %U %S' -o "$OUT/.time" \
          "$CDICTL" upload --url "$PROXY_URL" --token "$TOKEN" --ca "$E/proxy-ca.crt" \
          --checksum "sha256:$sum" --progress none "${chunk_args[@]}" "$src" \
          >>"$LOG" 2>&1 || crc=$? ;;
      post | post-h2)
        local version=--http1.1
        [[ $who == post-h2 ]] && version=--http2
        /usr/bin/time -f '%M %U %S' -o "$OUT/.time" \
          curl -fsS "$version" --cacert "$E/proxy-ca.crt" -X POST -T "$src" -H 'Expect:' \
          -H "Authorization: Bearer $TOKEN" -H "Repr-Digest: $repr" \
          -H 'Content-Type: application/octet-stream' "$PROXY_URL/v1beta1/upload" \
          >>"$LOG" 2>&1 || crc=$? ;;
      direct)
        /usr/bin/time -f '%M %U %S' -o "$OUT/.time" \
          curl -fsS --http1.1 --cacert "$E/server-ca.crt" --cert "$E/client.crt" --key "$E/client.key" \
          --resolve "cdi-upload-$CLAIM.$NAMESPACE.svc:$UPLOAD_PORT:127.0.0.1" \
          -X POST -T "$src" -H 'Expect:' -H "Repr-Digest: $repr" \
          -H 'Content-Type: application/octet-stream' \
          "https://cdi-upload-$CLAIM.$NAMESPACE.svc:$UPLOAD_PORT/v1beta1/upload" \
          >>"$LOG" 2>&1 || crc=$? ;;
    esac
    if ((crc)); then
      say "FAILED: $who upload of $f (rep $rep, exit $crc); see $LOG"
      stop_server
      return 1
    fi
    wait "$SERVER_PID" || src_rc=$?
    t1=$EPOCHREALTIME
    SERVER_PID=''
    if ((src_rc)); then
      say "FAILED: cdi-uploadserver exited $src_rc after the $who upload of $f (rep $rep)"
      cat "$WORK/pod/dev/termination-log" >>"$LOG" 2>/dev/null || true
      return 1
    fi
    T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    local c_rss c_u c_s s_u s_s p_cpu p_rss
    read -r c_rss c_u c_s < <(tail -n 1 "$OUT/.time")
    read -r server_rss s_u s_s < <(tail -n 1 "$WORK/server.time")
    server_cpu=$(awk -v u="$s_u" -v s="$s_s" 'BEGIN { printf "%.3f", u + s }')
    p_cpu=$(awk -v a="$proxy_before" -v b="$(cpu_of "$PROXY_PID")" 'BEGIN { printf "%.3f", b - a }')
    p_rss=$(hwm_kib "$PROXY_PID")
    local c_cpu
    c_cpu=$(awk -v u="$c_u" -v s="$c_s" 'BEGIN { printf "%.3f", u + s }')
    walls[$who]+="$T_WALL "
    cpus[$who]+="$(awk -v a="$c_cpu" -v b="$p_cpu" -v c="$server_cpu" 'BEGIN { printf "%.3f", a + b + c }') "
    ((c_rss > ${rss_c[$who]:-0})) && rss_c[$who]=$c_rss
    ((p_rss > ${rss_p[$who]:-0})) && rss_p[$who]=$p_rss
    ((server_rss > ${rss_s[$who]:-0})) && rss_s[$who]=$server_rss
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$f" "$rep" "$who" "$T_WALL" "$c_cpu" "$p_cpu" \
      "$server_cpu" "$c_rss" "$p_rss" "$server_rss" >>"$OUT/upload-runs.csv"
    if ! cmp -s "$IMAGE" "$CORPUS/disk.raw"; then
      say "WRONG OUTPUT: $who upload of $f (rep $rep): disk.img differs from disk.raw"
      identical=no
    fi
  }

  one() { # one WHO REP
    local who=$1 rep=$2
    clean_outputs
    case $who in
      local)
        timed /dev/null "$CDICTL" import "$src" "$OURS_OUT" --checksum "sha256:$sum" --progress none || return 1
        walls[local]+="$T_WALL "
        cpus[local]+="$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN { printf "%.3f", u + s }') "
        ((T_RSS > ${rss_c[local]:-0})) && rss_c[local]=$T_RSS
        printf '%s,%s,local,%s,%s,,,%s,,\n' "$f" "$rep" "$T_WALL" \
          "$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN { printf "%.3f", u + s }')" "$T_RSS" >>"$OUT/upload-runs.csv"
        cmp -s "$OURS_OUT" "$CORPUS/disk.raw" || { say "WRONG OUTPUT: local import of $f"; identical=no; } ;;
      sink)
        timed /dev/null curl -fsS -o /dev/null --http1.1 --cacert "$E/proxy-ca.crt" -X POST -T "$src" \
          -H 'Expect:' "https://127.0.0.1:$SINK_PORT/" || return 1
        walls[sink]+="$T_WALL "
        printf '%s,%s,sink,%s,%s,,,%s,,\n' "$f" "$rep" "$T_WALL" \
          "$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN { printf "%.3f", u + s }')" "$T_RSS" >>"$OUT/upload-runs.csv" ;;
      *) upload "$who" "$rep" || return 1 ;;
    esac
    clean_outputs
  }

  failed=0
  for ((rep = 1; rep <= REPS; rep++)); do
    order=(local tus post post-h2 direct sink)
    ((rep % 2)) || order=(sink direct post-h2 post tus local)
    for who in "${order[@]}"; do
      one "$who" "$rep" || { say "FAILED: $who $f (rep $rep); see $LOG"; failed=1; break 2; }
    done
    say "$(printf '%-14s rep %d/%d: local %s  tus %s  post %s  post-h2 %s  direct %s  sink %s' "$f" "$rep" "$REPS" \
      "$(last "${walls[local]}")" "$(last "${walls[tus]}")" "$(last "${walls[post]}")" \
      "$(last "${walls[post-h2]}")" "$(last "${walls[direct]}")" "$(last "${walls[sink]}")")"
  done
  if ((failed)); then
    FAILED=1
    ROWS+=("| $f | run failed | | | | | ≤ ${TARGET}× | **FAIL** (run) | | |")
    continue
  fi
  # shellcheck disable=SC2086
  {
    lm=$(median ${walls[local]}) tm=$(median ${walls[tus]}) pm=$(median ${walls[post]})
    dm=$(median ${walls[direct]}) km=$(median ${walls[sink]}) hm=$(median ${walls[post-h2]})
    lc=$(median ${cpus[local]}) tc=$(median ${cpus[tus]}) pc=$(median ${cpus[post]}) dc=$(median ${cpus[direct]})
    hc=$(median ${cpus[post-h2]})
  }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }'; }
  tr_=$(ratio "$tm" "$lm") pr=$(ratio "$pm" "$lm") dr=$(ratio "$dm" "$lm") kr=$(ratio "$km" "$lm")
  hr=$(ratio "$hm" "$lm")
  # The fastest each upload could be on this machine: all the CPU its three processes used,
  # spread perfectly over every core, as a ratio to the local import.
  floor() { awk -v c="$1" -v n="$(nproc)" -v b="$lm" 'BEGIN { printf "%.2f", c / n / b }'; }
  tf=$(floor "$tc") pf=$(floor "$pc") df=$(floor "$dc")
  why=()
  awk -v r="$tr_" -v t="$TARGET" 'BEGIN { exit !(r > t) }' && why+=(tus)
  awk -v r="$pr" -v t="$TARGET" 'BEGIN { exit !(r > t) }' && why+=(post)
  [[ $identical == yes ]] || { why+=(output); FAILED=1; }
  verdict=pass
  ((${#why[@]} == 0)) || verdict="**FAIL** (${why[*]})"
  triple() { printf '%s / %s / %s' "$(mib "${rss_c[$1]}")" "$(mib "${rss_p[$1]}")" "$(mib "${rss_s[$1]}")"; }
  ROWS+=("| $f | $lm | $tm | ${tr_}× | $pm | ${pr}× | ≤ ${TARGET}× | $verdict | $(triple tus) | $(triple post) | $identical |")
  FLOORS+=("| $f | $km | ${kr}× | $dm | ${dr}× | $hm | ${hr}× | $lc | $tc | $pc | $hc | $dc | ${tf}× | ${pf}× | ${df}× | $(mib "${rss_c[local]}") |")
  unset walls cpus rss_c rss_p rss_s
done

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# Uploads through cdi-uploadproxy and cdi-uploadserver vs. local import"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, corpus $(cat "$CORPUS/.bench-stamp")," \
    "$REPS repetitions, alternating, page cache warm; everything on 127.0.0.1 over TLS 1.3."
  echo "Every run verifies the file's sha256 and writes a sparse, synced image; medians in seconds, from the client's"
  echo "start to the upload server's exit (a fresh server per upload). tus: \`cdictl upload\`" \
    "(${TUS_CHUNK:+chunks of $TUS_CHUNK, }HTTP/1.1 to the proxy); post: one \`curl --http1.1 -T FILE -X POST /v1beta1/upload\` through the proxy."
  echo
  echo "| file | local (s) | tus (s) | tus/local | post (s) | post/local | target | pass/fail | tus RSS client / proxy / server (MiB) | post RSS client / proxy / server (MiB) | outputs identical |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "What bounds it:"
  echo
  echo "| file | TLS sink (s) | sink/local | direct POST (s) | direct/local | post HTTP/2 (s) | post-h2/local | local CPU (s) | tus CPU (s) | post CPU (s) | post-h2 CPU (s) | direct CPU (s) | tus CPU floor | post CPU floor | direct CPU floor | local RSS (MiB) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${FLOORS[@]}"
  echo
  echo "- TLS sink: \`curl -T FILE\` (HTTP/1.1) to nginx on loopback, which discards the body: the transport alone, no proxy, no import."
  echo "- direct POST: the same curl POST straight to the upload server with the proxy's client certificate: the upload without the proxy."
  echo "- post HTTP/2: the post with \`curl --http2\` (what curl picks by default, as the proxy offers h2): curl $(curl --version | awk 'NR == 1 { print $2 }') sends HTTP/2 bodies in small writes, at a CPU cost of its own."
  echo "- CPU: user + sys of client, proxy (from /proc) and upload server together (local: cdictl import alone), medians."
  echo "- CPU floor: that CPU / $(nproc) CPUs / local time: the ratio the upload could reach with every cycle overlapped perfectly."
  echo "  Client, proxy and server share the same $(nproc) cores here, so where the floor is above the target no scheduling can meet it on this machine."
  echo "- RSS: peak of each process (GNU time; the proxy's VmHWM, reset before each upload$([[ $CAN_RESET == yes ]] || echo ' — reset failed, so its peak since start')), the maximum over the repetitions."
  echo
  echo "Every run: $OUT/upload-runs.csv; stderr of all runs: $LOG; proxy log: $WORK/proxy.log."
} >"$OUT/upload-results.md"
echo
cat "$OUT/upload-results.md"
((FAILED == 0)) || { say "some runs failed or produced wrong output"; exit 1; }
