#!/usr/bin/env bash
# bench/clone.sh: a host-assisted clone of the corpus's disk.raw (sparse, about half holes)
# between two directories on the same disk, three ways, alternating, BENCH_REPS times:
#   ours:     cdi-uploadserver (CONTENT_TYPE=clone) on the target directory and cdi-cloner on
#             the source, mTLS over loopback, with upstream's environment contract; wall time
#             from the cloner's start to the upload server's exit (the target synced, renamed)
#   cp:       cp --sparse=always disk.img (cp+sync: the same, then `sync FILE`, as ours syncs)
#   upstream: upstream's stream without its snappy layer: `tar cSf - disk.img` piped over mTLS
#             (bench/tlspipe.py, Python's ssl module on OpenSSL) into `tar xf -` in the target
#             directory; snappy would only add CPU, so this is a lower bound of upstream's time
# Reports medians, ours/cp (target ≤ 1.2×) and upstream/ours (target ≥ 2×), peak RSS of the
# cloner and the server, the CPU floor, and checks every copy is identical to disk.raw and
# as sparse.
#
# Environment: BENCH_REPS (default 3), CDI_CLONER and CDI_UPLOADSERVER (skip the build),
# BENCH_CORPUS/VIRT_MIB/DATA_MIB as run.sh. Exit status as run.sh.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
LOG=$OUT/clone.log
WORK=$OUT/clone
REPS=${BENCH_REPS:-3}
TARGET_CP=1.2
TARGET_UPSTREAM=2

for t in openssl tar cp cmp awk sort stat ss python3; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, got '$REPS'"
if [[ ! -f $CORPUS/.bench-stamp ]]; then
  say "no corpus yet: generating it with run.sh's settings (BENCH_FILES=disk.raw run once)"
  BENCH_REPS=1 BENCH_FILES=disk.raw "$BENCH_DIR/run.sh" >/dev/null
fi

if [[ -z ${CDI_CLONER:-} || -z ${CDI_UPLOADSERVER:-} ]]; then
  say "building cdi-cloner and cdi-uploadserver (release)"
  (cd "$ROOT" && cargo build --release -p cdi-cloner -p cdi-uploadserver) || die "cargo build failed"
fi
CDI_CLONER=${CDI_CLONER:-$ROOT/target/release/cdi-cloner}
CDI_UPLOADSERVER=${CDI_UPLOADSERVER:-$ROOT/target/release/cdi-uploadserver}
for b in "$CDI_CLONER" "$CDI_UPLOADSERVER"; do [[ -x $b ]] || die "missing $b"; done

# ------------------------------------------------------------------------------- setup
rm -rf "$WORK"
SRC_DIR=$WORK/src/var/run/cdi/clone/source
TGT=$WORK/tgt
mkdir -p "$SRC_DIR" "$WORK/src/dev" "$TGT"/{data,dev,etc/tls} "$WORK/cp" "$WORK/up" "$WORK/pki"
: >"$LOG"
# The source claim's disk.img: the corpus file itself (a hard link: nothing copied).
ln "$CORPUS/disk.raw" "$SRC_DIR/disk.img" 2>/dev/null || cp --sparse=always "$CORPUS/disk.raw" "$SRC_DIR/disk.img"
VIRT_BYTES=$(stat -c %s "$SRC_DIR/disk.img")

# Certificates: a server CA and a client CA, as the controller makes them; the client's CN is
# upstream's upload client name for the clone.
CLIENT_NAME=src-ns/src-claim-tgt-ns/tgt-claim
P=$WORK/pki
cert() { # cert NAME CN CA [SAN]
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=${2//\//\\/}" 2>>"$LOG"
  printf 'subjectAltName=%s\n' "${4:-DNS:client}" >"$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/$3.crt" -CAkey "$P/$3.key" -CAcreateserial -days 2 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>>"$LOG"
}
for ca in server-ca client-ca; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$ca.key" \
    -out "$P/$ca.crt" -subj "/CN=$ca" -days 2 2>>"$LOG"
done
cert server 127.0.0.1 server-ca IP:127.0.0.1
cert client "$CLIENT_NAME" client-ca
cp "$P/server.crt" "$TGT/etc/tls/tls.crt"
cp "$P/server.key" "$TGT/etc/tls/tls.key"
cp "$P/client-ca.crt" "$TGT/etc/tls/ca.crt"

SERVER_PID=''
stop_server() {
  stop_timed "$SERVER_PID"
  SERVER_PID=''
}
clean_outputs() { rm -rf "$TGT/data/"* "$TGT/data/".disk.img* "$TGT/dev/termination-log" "$WORK/src/dev/termination-log" "$WORK/cp/"* "$WORK/up/"*; }
cleanup() { stop_server; clean_outputs; rm -f "$OUT/.time"; }
trap cleanup EXIT

PORT=$(free_port)
start_server() {
  rm -f "$WORK/server.time"
  /usr/bin/time -f '%M %U %S' -o "$WORK/server.time" env -i PATH="$PATH" CDI_ROOT="$TGT" \
    RUST_LOG=warn TLS_KEY_FILE=/etc/tls/tls.key TLS_CERT_FILE=/etc/tls/tls.crt \
    CLIENT_CERT_FILE=/etc/tls/ca.crt CLIENT_NAME="$CLIENT_NAME" LISTEN_ADDRESS=127.0.0.1 \
    LISTEN_PORT="$PORT" UPLOAD_IMAGE_SIZE="$VIRT_BYTES" FILESYSTEM_OVERHEAD=0 CONTENT_TYPE=clone \
    OWNER_UID=bench "$CDI_UPLOADSERVER" </dev/null 2>>"$LOG" &
  SERVER_PID=$!
  await_listening "$PORT" "$SERVER_PID" || { say "cdi-uploadserver did not listen on $PORT; see $LOG"; return 1; }
}

# ------------------------------------------------------------------------------- run
printf 'rep,who,wall_s,cpu_s,client_rss_kib,server_rss_kib,alloc_mib\n' >"$OUT/clone-runs.csv"
declare -A walls=() cpus=() rss_c=() rss_s=()
identical=yes
FAILED=0
record() { # record WHO WALL CPU CLIENT_RSS SERVER_RSS OUTPUT
  walls[$1]+="$2 "
  cpus[$1]+="$3 "
  ((${4:-0} > ${rss_c[$1]:-0})) && rss_c[$1]=$4
  ((${5:-0} > ${rss_s[$1]:-0})) && rss_s[$1]=$5
  local alloc
  alloc=$(alloc_mib "$6")
  printf '%s,%s,%s,%s,%s,%s,%s\n' "$rep" "$1" "$2" "$3" "${4:-}" "${5:-}" "$alloc" >>"$OUT/clone-runs.csv"
  if ! cmp -s "$6" "$CORPUS/disk.raw"; then
    say "WRONG OUTPUT: $1 (rep $rep): $6 differs from disk.raw"
    identical=no
  fi
  ALLOC[$1]=$alloc
}
declare -A ALLOC=()
# record_pair WHO T0 T1 OUTPUT: a client (GNU time in $OUT/.time) and a server (in
# $WORK/server.time) run from T0 to T1; CPU is both processes'.
record_pair() {
  local c_rss c_u c_s s_rss s_u s_s
  read -r c_rss c_u c_s < <(tail -n 1 "$OUT/.time")
  read -r s_rss s_u s_s < <(tail -n 1 "$WORK/server.time")
  record "$1" "$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", b - a }')" \
    "$(awk -v a="$c_u" -v b="$c_s" -v c="$s_u" -v d="$s_s" 'BEGIN { printf "%.3f", a + b + c + d }')" \
    "$c_rss" "$s_rss" "$4"
}
cpu_sum() { awk -v u="$1" -v s="$2" 'BEGIN { printf "%.3f", u + s }'; }

one() { # one WHO
  local who=$1 t0 t1 rc=0
  clean_outputs
  printf '\n$ %s (rep %s)\n' "$who" "$rep" >>"$LOG"
  case $who in
    ours)
      start_server || return 1
      t0=$EPOCHREALTIME
      /usr/bin/time -f '%M %U %S' -o "$OUT/.time" env -i PATH="$PATH" CDI_ROOT="$WORK/src" \
        RUST_LOG=warn CDI_METRICS_ADDR=127.0.0.1:0 UPLOAD_URL="https://127.0.0.1:$PORT/v1beta1/upload" \
        CLIENT_CERT="$(cat "$P/client.crt")" CLIENT_KEY="$(cat "$P/client.key")" \
        SERVER_CA_CERT="$(cat "$P/server-ca.crt")" OWNER_UID=bench VOLUME_MODE=filesystem \
        MOUNT_POINT=/var/run/cdi/clone/source PREALLOCATION=false "$CDI_CLONER" </dev/null 2>>"$LOG" || rc=$?
      if ((rc)); then
        cat "$WORK/src/dev/termination-log" >>"$LOG" 2>/dev/null || true
        stop_server
        return 1
      fi
      wait "$SERVER_PID" || rc=$?
      t1=$EPOCHREALTIME
      SERVER_PID=''
      ((rc == 0)) || return 1
      record_pair ours "$t0" "$t1" "$TGT/data/disk.img" ;;
    cp)
      timed /dev/null cp --sparse=always "$SRC_DIR/disk.img" "$WORK/cp/disk.img" || return 1
      record cp "$T_WALL" "$(cpu_sum "$T_USER" "$T_SYS")" "$T_RSS" "" "$WORK/cp/disk.img" ;;
    cp+sync)
      timed /dev/null sh -c 'cp --sparse=always "$1" "$2" && sync "$2"' sh "$SRC_DIR/disk.img" "$WORK/cp/disk.img" || return 1
      record cp+sync "$T_WALL" "$(cpu_sum "$T_USER" "$T_SYS")" "$T_RSS" "" "$WORK/cp/disk.img" ;;
    upstream)
      local uport
      uport=$(free_port)
      /usr/bin/time -f '%M %U %S' -o "$WORK/server.time" sh -c \
        'python3 "$1" serve "$2" "$3" "$4" "$5" | tar xf - -C "$6"' sh "$BENCH_DIR/tlspipe.py" "$uport" \
        "$P/server.crt" "$P/server.key" "$P/client-ca.crt" "$WORK/up" 2>>"$LOG" &
      SERVER_PID=$!
      local i
      for ((i = 0; i < 2000; i++)); do listening "$uport" && break; sleep 0.01; done
      t0=$EPOCHREALTIME
      /usr/bin/time -f '%M %U %S' -o "$OUT/.time" sh -c \
        'tar cSf - -C "$1" disk.img | python3 "$2" send "$3" "$4" "$5" "$6"' sh "$SRC_DIR" \
        "$BENCH_DIR/tlspipe.py" "$uport" "$P/client.crt" "$P/client.key" "$P/server-ca.crt" 2>>"$LOG" || rc=$?
      wait "$SERVER_PID" || rc=$?
      t1=$EPOCHREALTIME
      SERVER_PID=''
      ((rc == 0)) || return 1
      record_pair upstream "$t0" "$t1" "$WORK/up/disk.img" ;;
  esac
  clean_outputs
}

cat "$SRC_DIR/disk.img" >/dev/null
for ((rep = 1; rep <= REPS; rep++)); do
  order=(ours cp cp+sync upstream)
  ((rep % 2)) || order=(upstream cp+sync cp ours)
  for who in "${order[@]}"; do
    one "$who" || { say "FAILED: $who (rep $rep); see $LOG"; FAILED=1; break 2; }
  done
  say "$(printf 'rep %d/%d: ours %s  cp %s  cp+sync %s  upstream %s' "$rep" "$REPS" \
    "$(awk '{ print $NF }' <<<"${walls[ours]}")" "$(awk '{ print $NF }' <<<"${walls[cp]}")" \
    "$(awk '{ print $NF }' <<<"${walls[cp+sync]}")" "$(awk '{ print $NF }' <<<"${walls[upstream]}")")"
done
((FAILED == 0)) || die "a run failed; see $LOG"

# shellcheck disable=SC2086
{
  om=$(median ${walls[ours]}) cm=$(median ${walls[cp]}) sm=$(median ${walls[cp+sync]}) um=$(median ${walls[upstream]})
  oc=$(median ${cpus[ours]}) cc=$(median ${cpus[cp]}) sc=$(median ${cpus[cp+sync]}) uc=$(median ${cpus[upstream]})
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }'; }
r_cp=$(ratio "$om" "$cm") r_sync=$(ratio "$om" "$sm") r_up=$(ratio "$um" "$om")
floor=$(awk -v c="$oc" -v n="$(nproc)" -v b="$cm" 'BEGIN { printf "%.2f", c / n / b }')
why=()
awk -v r="$r_cp" -v t="$TARGET_CP" 'BEGIN { exit !(r > t) }' && why+=("ours/cp")
awk -v r="$r_up" -v t="$TARGET_UPSTREAM" 'BEGIN { exit !(r < t) }' && why+=("upstream/ours")
[[ $identical == yes ]] || { why+=(output); FAILED=1; }
verdict=pass
((${#why[@]} == 0)) || verdict="**FAIL** (${why[*]})"

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# Host-assisted clone of disk.raw between two directories"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, corpus $(cat "$CORPUS/.bench-stamp")," \
    "$REPS repetitions, alternating, page cache warm; medians in seconds."
  echo
  echo "| run | wall (s) | CPU (s) | RSS client / server (MiB) | target allocated (MiB) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| ours: cdi-cloner → cdi-uploadserver, mTLS | $om | $oc | $(mib "${rss_c[ours]}") / $(mib "${rss_s[ours]}") | ${ALLOC[ours]} |"
  echo "| cp --sparse=always | $cm | $cc | $(mib "${rss_c[cp]}") | ${ALLOC[cp]} |"
  echo "| cp --sparse=always + sync | $sm | $sc | $(mib "${rss_c[cp+sync]}") | ${ALLOC[cp+sync]} |"
  echo "| upstream-style: tar cSf - ∣ mTLS ∣ tar x | $um | $uc | $(mib "${rss_c[upstream]}") / $(mib "${rss_s[upstream]}") | ${ALLOC[upstream]} |"
  echo
  echo "| ratio | measured | target | pass/fail |"
  echo "|---|---:|---:|---|"
  echo "| ours / cp | ${r_cp}× | ≤ ${TARGET_CP}× | $(awk -v r="$r_cp" -v t="$TARGET_CP" 'BEGIN { print (r <= t ? "pass" : "**FAIL**") }') |"
  echo "| ours / (cp + sync) | ${r_sync}× | | |"
  echo "| upstream / ours | ${r_up}× | ≥ ${TARGET_UPSTREAM}× | $(awk -v r="$r_up" -v t="$TARGET_UPSTREAM" 'BEGIN { print (r >= t ? "pass" : "**FAIL**") }') |"
  echo "| CPU floor: ours' CPU / $(nproc) CPUs / cp | ${floor}× | | |"
  echo
  echo "Verdict: $verdict; every copy identical to disk.raw: $identical."
  echo
  echo "- ours: the cloner reads the source's data extents (SEEK_DATA/SEEK_HOLE), drops zero granules, checksums every"
  echo "  frame (CRC-64, the stream's digest a sha256 over them) and sends over TLS 1.3; the server decrypts, checks"
  echo "  the same, writes with O_DIRECT and fsyncs."
  echo "  Both processes share the $(nproc) cores: the CPU floor is the ratio to cp no scheduling can beat here."
  echo "- upstream-style has no snappy layer (upstream has one, which adds CPU on both sides)."
  echo
  echo "Every run: $OUT/clone-runs.csv; stderr of all runs: $LOG."
} >"$OUT/clone-results.md"
echo
cat "$OUT/clone-results.md"
((FAILED == 0)) || { say "some runs produced wrong output"; exit 1; }
