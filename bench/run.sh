#!/usr/bin/env bash
# bench/run.sh: cdictl import vs. reference tools, measured side by side.
#
# Builds cdictl (release), makes or reuses the benchmark corpus in bench/out/corpus, then for
# each corpus file runs `cdictl import` and a reference command alternately, BENCH_REPS times
# each, with the page cache warm. Reports median wall times, their ratio (ours/reference)
# against a target, our peak RSS, and whether our output is byte-identical to disk.raw.
# The table goes to stdout and bench/out/results.md. See bench/README.md.
#
# Exit status: 0 when every run succeeded and every output was correct, even if targets were
# missed (this is a report); 1 if a run failed or an output was wrong; 2 on setup errors.
#
# Environment:
#   BENCH_CORPUS   reduced (default: VIRT_MIB=1024 DATA_MIB=384) or full (4096/1536)
#   VIRT_MIB, DATA_MIB  override the corpus size directly (wins over BENCH_CORPUS)
#   BENCH_REPS     repetitions per command (default 3; the median is reported)
#   BENCH_FILES    space-separated subset of corpus files to run (default: all eight)
#   CDICTL         use this binary instead of building target/release/cdictl
#   CDI_SHARED     directory holding make-corpus.sh (default: ../../shared from this script)
#   CDI_LOG        passed through to cdictl (e.g. debug) for profiling; default quiet
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SHARED_DIR=${CDI_SHARED:-$(dirname "$0")/../../shared}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
LOG=$OUT/run.log
MAKE_CORPUS=$SHARED_DIR/make-corpus.sh

# ------------------------------------------------------------------------------- tools
[[ -n ${BASH_VERSINFO:-} && ${BASH_VERSINFO[0]} -ge 5 ]] ||
  die "bash >= 5 is needed (for \$EPOCHREALTIME)"
missing=()
for t in qemu-img pigz xz zstd openssl cmp sha256sum awk sort stat python3 bc; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[[ -n ${CDICTL:-} ]] || command -v cargo >/dev/null 2>&1 || missing+=(cargo)
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: qemu-utils pigz xz-utils zstd openssl diffutils python3 bc)"
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"
/usr/bin/time -f %M -o /dev/null true 2>/dev/null ||
  die "/usr/bin/time does not accept -f/-o; GNU time is needed"
[[ -r $MAKE_CORPUS ]] || die "corpus generator not found: $MAKE_CORPUS (set CDI_SHARED)"

REPS=${BENCH_REPS:-3}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, got '$REPS'"

case ${BENCH_CORPUS:-reduced} in
  reduced) def_virt=1024 def_data=384 ;;
  full) def_virt=4096 def_data=1536 ;;
  *) die "BENCH_CORPUS must be 'reduced' or 'full', got '${BENCH_CORPUS}'" ;;
esac
VIRT_MIB=${VIRT_MIB:-$def_virt}
DATA_MIB=${DATA_MIB:-$def_data}
[[ $VIRT_MIB =~ ^[1-9][0-9]*$ && $DATA_MIB =~ ^[1-9][0-9]*$ ]] ||
  die "VIRT_MIB and DATA_MIB must be positive integers"
case "$VIRT_MIB/$DATA_MIB" in
  1024/384) CORPUS_NAME=reduced ;;
  4096/1536) CORPUS_NAME=full ;;
  *) CORPUS_NAME=custom ;;
esac

ALL_FILES=(disk.qcow2 disk-c.qcow2 disk.raw.gz disk.qcow2.gz disk.raw.xz disk.qcow2.xz
  disk.raw.zst disk.raw)
if [[ -n ${BENCH_FILES:-} ]]; then
  read -r -a FILES <<<"$BENCH_FILES"
  for f in "${FILES[@]}"; do
    [[ " ${ALL_FILES[*]} " == *" $f "* ]] || die "unknown file in BENCH_FILES: $f (known: ${ALL_FILES[*]})"
  done
else
  FILES=("${ALL_FILES[@]}")
fi

mkdir -p "$OUT"
: >"$LOG"
T_START=$EPOCHREALTIME

# ------------------------------------------------------------------------------- build
if [[ -n ${CDICTL:-} ]]; then
  [[ -x $CDICTL ]] || die "CDICTL=$CDICTL is not an executable"
  say "using CDICTL=$CDICTL (no build)"
else
  say "building cdictl (cargo build --release -p cdi-cli)"
  (cd "$ROOT" && cargo build --release -p cdi-cli) || die "cargo build failed"
  CDICTL=$ROOT/target/release/cdictl
  [[ -x $CDICTL ]] || die "build finished but $CDICTL is missing"
fi

# ------------------------------------------------------------------------------- corpus
STAMP=$CORPUS/.bench-stamp
WANT_STAMP="virt_mib=$VIRT_MIB data_mib=$DATA_MIB seed=default"
corpus_ok() {
  [[ -f $CORPUS/SHA256SUMS && -f $STAMP ]] || return 1
  [[ $(cat "$STAMP") == "$WANT_STAMP" ]] || return 1
  local f
  for f in "${ALL_FILES[@]}"; do [[ -f $CORPUS/$f ]] || return 1; done
}
CORPUS_SECS=
if corpus_ok; then
  say "corpus: $CORPUS_NAME (VIRT_MIB=$VIRT_MIB DATA_MIB=$DATA_MIB), reusing $CORPUS"
else
  say "corpus: $CORPUS_NAME (VIRT_MIB=$VIRT_MIB DATA_MIB=$DATA_MIB), generating in $CORPUS"
  say "  (reduced: a few minutes; full: ~30 min and ~8.2 GiB, mostly xz -6)"
  rm -f "$STAMP"
  t0=$EPOCHREALTIME
  VIRT_MIB=$VIRT_MIB DATA_MIB=$DATA_MIB bash "$MAKE_CORPUS" "$CORPUS" ||
    die "make-corpus.sh failed"
  CORPUS_SECS=$(elapsed "$t0")
  printf '%s\n' "$WANT_STAMP" >"$STAMP"
  say "corpus generated in ${CORPUS_SECS} s"
fi

sum_of() { awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$CORPUS/SHA256SUMS"; }
for f in "${FILES[@]}"; do
  [[ $(sum_of "$f") =~ ^[0-9a-f]{64}$ ]] || die "no sha256 for $f in $CORPUS/SHA256SUMS"
done

# ------------------------------------------------------------------------------- helpers
OURS_OUT=$OUT/ours.raw
REF_OUT=$OUT/ref.raw
clean_outputs() { rm -f "$OURS_OUT" "$OUT/.ours.raw.cdi-partial" "$REF_OUT"; }
trap 'clean_outputs; rm -f "$OUT/.time"' EXIT

# Sets REF_TARGET, REF_LABEL, REF_STDOUT and REF_CMD (argv) for corpus file $1.
ref_for() {
  local f=$1 p=$CORPUS/$1
  REF_STDOUT=/dev/null
  case $f in
    disk.qcow2) REF_TARGET=1.0 ;;
    disk-c.qcow2) REF_TARGET=0.8 ;;
    disk.raw.gz | disk.qcow2.gz) REF_TARGET=1.0 ;;
    disk.raw.xz | disk.qcow2.xz) REF_TARGET=1.15 ;;
    disk.raw.zst) REF_TARGET=2.0 ;;
    disk.raw) REF_TARGET=1.5 ;;
  esac
  SYNC_CMD=() HASH_CMD=()
  case $f in
    *.qcow2)
      REF_CMD=(qemu-img convert -O raw "$p" "$REF_OUT")
      REF_LABEL="qemu-img convert -O raw $f out.raw"
      # The same with a durable result: cache=writeback flushes the output when it closes it,
      # as we do (the default, cache=unsafe, never syncs). Reported beside the target row.
      SYNC_CMD=(qemu-img convert -t writeback -O raw "$p" "$REF_OUT")
      # The floor of any import that verifies the source's sha256: hashing it and nothing else.
      HASH_CMD=(openssl dgst -sha256 "$p") ;;
    *.gz)
      REF_CMD=(pigz -dc "$p")
      REF_LABEL="pigz -dc $f > /dev/null" ;;
    *.xz)
      REF_CMD=(xz -T2 -dc "$p")
      REF_LABEL="xz -T2 -dc $f > /dev/null" ;;
    *.zst)
      REF_CMD=(zstd -dc "$p")
      REF_LABEL="zstd -dc $f > /dev/null" ;;
    disk.raw)
      REF_CMD=(openssl dgst -sha256 "$p")
      REF_STDOUT=$OUT/ref.stdout
      REF_LABEL="openssl dgst -sha256 $f" ;;
  esac
}


# ------------------------------------------------------------------------------- run
RSS_LIMIT_MIB=256
FAILED=0
ROWS=()
DETAILS=()
SYNCED=()
FLOORS=()
RAW_ALLOC=$(alloc_mib "$CORPUS/disk.raw")
say "cdictl: $CDICTL; $REPS repetitions per command, alternating; log: $LOG"
printf 'file,rep,who,wall_s,user_s,sys_s,rss_kib\n' >"$OUT/runs.csv"
T_RUN=$EPOCHREALTIME

for f in "${FILES[@]}"; do
  src=$CORPUS/$f
  sum=$(sum_of "$f")
  ref_for "$f"
  # Untimed warm-up read: every timed run starts with its input in the page cache.
  cat "$src" >/dev/null
  [[ $f == disk.raw ]] || cat "$CORPUS/disk.raw" >/dev/null # for cmp
  ours_w=() ours_u=() ours_s=() ours_rss=() ref_w=() ref_u=() ref_s=() sync_w=() hash_w=()
  identical=no out_alloc=- file_failed=0

  run_ours() {
    clean_outputs
    if ! timed "$OUT/ours.stdout" "$CDICTL" import "$src" "$OURS_OUT" \
      --checksum "sha256:$sum" --progress none; then
      say "FAILED: cdictl import $f (rep $rep); see $LOG"
      tail -n 5 "$LOG" | sed 's/^/    /' >&2
      file_failed=1
      return
    fi
    ours_w+=("$T_WALL") ours_u+=("$T_USER") ours_s+=("$T_SYS") ours_rss+=("$T_RSS")
    printf '%s,%s,ours,%s,%s,%s,%s\n' "$f" "$rep" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" >>"$OUT/runs.csv"
    if ((rep == 1)); then # correctness, once per file
      if cmp -s "$OURS_OUT" "$CORPUS/disk.raw"; then identical=yes; else identical=no; fi
      out_alloc=$(alloc_mib "$OURS_OUT")
    fi
    clean_outputs
  }
  run_ref() {
    clean_outputs
    if ! timed "$REF_STDOUT" "${REF_CMD[@]}"; then
      say "FAILED: reference ${REF_LABEL} (rep $rep); see $LOG"
      file_failed=1
      return
    fi
    ref_w+=("$T_WALL") ref_u+=("$T_USER") ref_s+=("$T_SYS")
    printf '%s,%s,ref,%s,%s,%s,%s\n' "$f" "$rep" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" >>"$OUT/runs.csv"
    clean_outputs
  }

  # A command measured beside the target pair for context: $1 names the array holding it, $2
  # the array its wall times go to, $3 its label in runs.csv.
  run_extra() {
    local -n cmd=$1 times=$2
    ((${#cmd[@]})) || return 0
    clean_outputs
    if ! timed /dev/null "${cmd[@]}"; then
      say "FAILED: ${cmd[*]} (rep $rep); see $LOG"
      file_failed=1
      return
    fi
    times+=("$T_WALL")
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$f" "$rep" "$3" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" >>"$OUT/runs.csv"
    clean_outputs
  }
  run_sync() { run_extra SYNC_CMD sync_w ref-fsync; }
  run_hash() { run_extra HASH_CMD hash_w sha256-alone; }

  for ((rep = 1; rep <= REPS; rep++)); do
    # Alternate the order (ours, ref / ref, ours) so drift and cache effects fall on both.
    if ((rep % 2)); then run_ours; run_ref; run_sync; run_hash; else run_hash; run_sync; run_ref; run_ours; fi
    ((file_failed)) && break
    say "$(printf '%-14s rep %d/%d: ours %6.3f s (%4d MiB RSS)  ref %6.3f s' "$f" "$rep" "$REPS" \
      "${ours_w[-1]}" "$(mib "${ours_rss[-1]}")" "${ref_w[-1]}")"
  done

  if ((file_failed)); then
    FAILED=1
    ((${#ours_w[@]})) || identical=-
    ROWS+=("| $f | run failed | | | ≤ ${REF_TARGET}× | **FAIL** (run) | | $identical | $out_alloc |")
    continue
  fi
  [[ $identical == yes ]] || { FAILED=1; say "WRONG OUTPUT: $f does not match disk.raw"; }
  om=$(median "${ours_w[@]}")
  rm_=$(median "${ref_w[@]}")
  rss=$(mib "$(maxof "${ours_rss[@]}")")
  ratio=$(awk -v a="$om" -v b="$rm_" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }')
  verdict=pass why=()
  awk -v r="$ratio" -v t="$REF_TARGET" 'BEGIN { exit !(r > t) }' && why+=(time)
  ((rss > RSS_LIMIT_MIB)) && why+=(RSS)
  [[ $identical == yes ]] || why+=(output)
  ((${#why[@]} == 0)) || verdict="**FAIL** (${why[*]})"
  ROWS+=("| $f | $om | $rm_ | ${ratio}× | ≤ ${REF_TARGET}× | $verdict | $rss | $identical | $out_alloc |")
  ou=$(median "${ours_u[@]}") os=$(median "${ours_s[@]}")
  ru=$(median "${ref_u[@]}") rs=$(median "${ref_s[@]}")
  ocpu=$(awk -v u="$ou" -v s="$os" -v w="$om" 'BEGIN { printf "%.2f", (w > 0 ? (u + s) / w : 0) }')
  rcpu=$(awk -v u="$ru" -v s="$rs" -v w="$rm_" 'BEGIN { printf "%.2f", (w > 0 ? (u + s) / w : 0) }')
  DETAILS+=("| $f | $ou | $os | $ocpu | $ru | $rs | $rcpu | \`$REF_LABEL\` |")
  if ((${#sync_w[@]})); then
    sm=$(median "${sync_w[@]}")
    sratio=$(awk -v a="$om" -v b="$sm" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }')
    SYNCED+=("| $f | $om | $sm | ${sratio}× |")
  fi
  if ((${#hash_w[@]})); then
    hm=$(median "${hash_w[@]}")
    hratio=$(awk -v a="$hm" -v b="$rm_" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }')
    FLOORS+=("| $f | $om | $hm | $rm_ | ${hratio}× |")
  fi
done
RUN_SECS=$(elapsed "$T_RUN")

# ------------------------------------------------------------------------------- report
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# cdictl import benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, $CORPUS_NAME corpus" \
    "(VIRT_MIB=$VIRT_MIB DATA_MIB=$DATA_MIB; disk.raw has $RAW_ALLOC MiB allocated)," \
    "$REPS repetitions each, alternating, page cache warm."
  echo "Ratio = ours / reference (median wall times); lower is better. Peak RSS limit: $RSS_LIMIT_MIB MiB."
  echo
  echo "| file | ours (s, median) | reference (s, median) | ratio | target | pass/fail | our peak RSS (MiB) | output identical | output allocated (MiB) |"
  echo "|---|---:|---:|---:|---:|---|---:|---|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "CPU time (medians, s) and CPU use ((user+sys)/wall) of each side; reference commands:"
  echo
  echo "| file | ours user | ours sys | ours CPU/wall | ref user | ref sys | ref CPU/wall | reference |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  ((${#DETAILS[@]})) && printf '%s\n' "${DETAILS[@]}"
  if ((${#SYNCED[@]})); then
    echo
    echo "Like for like on durability: qemu-img with \`-t writeback\`, which syncs its output on close as we do:"
    echo
    echo "| file | ours (s) | qemu-img convert -t writeback (s) | ratio |"
    echo "|---|---:|---:|---:|"
    printf '%s\n' "${SYNCED[@]}"
  fi
  if ((${#FLOORS[@]})); then
    echo
    echo "The floor for an import that verifies the source's sha256: hashing the file and nothing else" \
      "(\`openssl dgst -sha256 FILE\`, one core), against the reference that does not hash:"
    echo
    echo "| file | ours (s) | sha256 alone (s) | reference (s) | sha256 alone / reference |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${FLOORS[@]}"
  fi
  echo
  echo "Ours: \`cdictl import FILE out.raw --checksum sha256:<SHA256SUMS> --progress none\`" \
    "(verifies the source's sha256, writes a sparse file, fsyncs it, renames it into place)."
  echo "Corpus generation: ${CORPUS_SECS:+$CORPUS_SECS s}${CORPUS_SECS:-reused existing corpus};" \
    "benchmark runs: $RUN_SECS s." \
    "Every run: $OUT/runs.csv; stderr of all runs: $LOG."
} >"$OUT/results.md"
echo
cat "$OUT/results.md"
say "total $(elapsed "$T_START") s; results in $OUT/results.md"
if ((FAILED)); then
  say "some runs failed or produced wrong output (see above)"
  exit 1
fi
exit 0
