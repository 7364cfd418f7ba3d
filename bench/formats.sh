#!/usr/bin/env bash
# bench/formats.sh: `cdictl import` of vmdk, vhd, vhdx and vdi images against
# `qemu-img convert -f FORMAT -t writeback -O raw` of the same file, in the same run.
#
# The corpus disk (bench/out/corpus/disk.raw, made by run.sh's corpus generation when missing)
# is converted, untimed, by qemu-img into every subformat below, and each image once more to
# raw by qemu-img as the oracle. Then, per image, ours and qemu-img run alternately BENCH_REPS
# times with the page cache warm; both write a raw file and make it durable (we fsync and
# rename; qemu-img's cache=writeback flushes on close). Reports median wall times, their
# ratio against the issue's target, peak RSS of both, and whether our output equals the oracle.
# qemu-img is told each image's format: its probe takes a fixed vhd (footer at the end only)
# for raw and would copy the footer into the disk; we detect it by that footer.
#
# Environment: BENCH_REPS (default 3), BENCH_CORPUS/VIRT_MIB/DATA_MIB as run.sh (used only
# when the corpus must be made), BENCH_FORMATS (subset of the image names below), CDICTL (skip
# the build). Exit status: 0 when every run succeeded and every output was identical (even if
# a target was missed: this is a report); 1 if a run failed or an output differed; 2 on setup.
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/out
CORPUS=$OUT/corpus
WORK=$OUT/formats
LOG=$OUT/formats.log
REPS=${BENCH_REPS:-3}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer, got '$REPS'"

for t in qemu-img cmp awk sort stat; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (Debian: qemu-utils diffutils)"
done
[[ -x /usr/bin/time ]] || die "GNU time is needed at /usr/bin/time (Debian: apt-get install time)"

# name | qemu-img -O format | its options | target ratio (issue 20)
IMAGES=(
  "stream.vmdk|vmdk|subformat=streamOptimized|1.0"
  "sparse.vmdk|vmdk|subformat=monolithicSparse|-"
  "fixed.vhd|vpc|subformat=fixed|1.0"
  "dynamic.vhd|vpc|subformat=dynamic|1.0"
  "disk.vhdx|vhdx||1.2"
  "dynamic.vdi|vdi||1.0"
  "static.vdi|vdi|static=on|1.0"
)
if [[ -n ${BENCH_FORMATS:-} ]]; then
  wanted=()
  for spec in "${IMAGES[@]}"; do
    [[ " $BENCH_FORMATS " == *" ${spec%%|*} "* ]] && wanted+=("$spec")
  done
  ((${#wanted[@]})) || die "BENCH_FORMATS names none of: $(printf '%s ' "${IMAGES[@]%%|*}")"
  IMAGES=("${wanted[@]}")
fi

if [[ ! -f $CORPUS/disk.raw || ! -f $CORPUS/.bench-stamp ]]; then
  say "no corpus yet: generating it with run.sh's settings"
  BENCH_REPS=1 BENCH_FILES=disk.raw "$BENCH_DIR/run.sh" >/dev/null
fi
if [[ -z ${CDICTL:-} ]]; then
  say "building cdictl (cargo build --release -p cdi-cli)"
  (cd "$ROOT" && cargo build --release -p cdi-cli) || die "cargo build failed"
fi
CDICTL=${CDICTL:-$ROOT/target/release/cdictl}
[[ -x $CDICTL ]] || die "$CDICTL is not an executable"

mkdir -p "$WORK"
: >"$LOG"
OURS_OUT=$OUT/ours.raw
REF_OUT=$OUT/ref.raw
clean_outputs() { rm -f "$OURS_OUT" "$OUT/.ours.raw.cdi-partial" "$REF_OUT"; }
trap 'clean_outputs; rm -f "$OUT/.time" "$WORK"/*.oracle.raw' EXIT

# ------------------------------------------------------------------------------- images
# Made once per corpus: an image is reused while it is newer than disk.raw.
T_MAKE=$EPOCHREALTIME
for spec in "${IMAGES[@]}"; do
  IFS='|' read -r name fmt opts _ <<<"$spec"
  img=$WORK/$name
  if [[ ! -f $img || $img -ot $CORPUS/disk.raw ]]; then
    say "making $name (qemu-img convert -O $fmt${opts:+ -o $opts})"
    rm -f "$img"
    qemu-img convert -O "$fmt" ${opts:+-o "$opts"} "$CORPUS/disk.raw" "$img.tmp" 2>>"$LOG" ||
      die "qemu-img could not make $name"
    mv "$img.tmp" "$img"
  fi
done
MAKE_SECS=$(elapsed "$T_MAKE")

# ------------------------------------------------------------------------------- run
printf 'image,rep,who,wall_s,user_s,sys_s,rss_kib\n' >"$OUT/formats-runs.csv"
FAILED=0
ROWS=()
for spec in "${IMAGES[@]}"; do
  IFS='|' read -r name fmt opts target <<<"$spec"
  img=$WORK/$name
  oracle=$WORK/$name.oracle.raw
  qemu-img convert -f "$fmt" -O raw "$img" "$oracle" 2>>"$LOG" || die "qemu-img could not read $name back"
  cat "$img" >/dev/null # page cache warm for every timed run
  ours_w=() ref_w=() ours_rss=() ref_rss=()
  identical=yes out_alloc=- failed=0

  run() { # run ours|ref REP
    local who=$1 rep=$2 out
    clean_outputs
    if [[ $who == ours ]]; then
      out=$OURS_OUT
      timed /dev/null "$CDICTL" import "$img" "$out" --progress none || return 1
      ours_w+=("$T_WALL") ours_rss+=("$T_RSS")
    else
      out=$REF_OUT
      timed /dev/null qemu-img convert -f "$fmt" -t writeback -O raw "$img" "$out" || return 1
      ref_w+=("$T_WALL") ref_rss+=("$T_RSS")
    fi
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$name" "$rep" "$who" "$T_WALL" "$T_USER" "$T_SYS" "$T_RSS" \
      >>"$OUT/formats-runs.csv"
    if [[ $who == ours ]] && ((rep == 1)); then
      cmp -s "$out" "$oracle" || { identical=no; say "$name: our output differs from qemu-img's"; }
      out_alloc=$(alloc_mib "$out")
    fi
    clean_outputs
  }
  for ((rep = 1; rep <= REPS; rep++)); do
    # Alternate the order so drift and cache effects fall on both sides.
    if ((rep % 2)); then order=(ours ref); else order=(ref ours); fi
    for who in "${order[@]}"; do
      run "$who" "$rep" || { say "FAILED: $who $name (rep $rep); see $LOG"; failed=1; }
    done
    ((failed)) && break
    say "$(printf '%-12s rep %d/%d: ours %6.3f s (%4d MiB)  qemu-img %6.3f s' "$name" "$rep" "$REPS" \
      "${ours_w[-1]}" "$(mib "${ours_rss[-1]}")" "${ref_w[-1]}")"
  done
  rm -f "$oracle"
  size=$(awk -v b="$(stat -c %s "$img")" 'BEGIN { printf "%.0f", b / 1048576 }')
  label="$fmt${opts:+ $opts}"
  if ((failed)); then
    FAILED=1
    ROWS+=("| $name | $label | $size | run failed | | | ≤ ${target}× | **FAIL** (run) | | | $identical | |")
    continue
  fi
  [[ $identical == yes ]] || FAILED=1
  om=$(median "${ours_w[@]}") rm_=$(median "${ref_w[@]}")
  ratio=$(awk -v a="$om" -v b="$rm_" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 999) }')
  verdict=-
  if [[ $target != - ]]; then
    verdict=pass
    awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r > t) }' && verdict="**FAIL** (time)"
  fi
  [[ $identical == yes ]] || verdict="**FAIL** (output)"
  shown_target="≤ ${target}×"
  [[ $target == - ]] && shown_target="(none)"
  ROWS+=("| $name | $label | $size | $om | $rm_ | ${ratio}× | $shown_target | $verdict | $(mib "$(maxof "${ours_rss[@]}")") | $(mib "$(maxof "${ref_rss[@]}")") | $identical | $out_alloc |")
done

# ------------------------------------------------------------------------------- report
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
  echo "# Image formats: cdictl import vs. qemu-img convert"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), cdi-rs $rev, $(nproc) CPUs, corpus $(cat "$CORPUS/.bench-stamp")" \
    "(disk.raw: $(alloc_mib "$CORPUS/disk.raw") MiB allocated), $REPS repetitions each, alternating, page cache warm."
  echo "Ratio = ours / qemu-img (median wall times); lower is better."
  echo
  echo "| image | made with qemu-img -O | size (MiB) | ours (s) | qemu-img (s) | ratio | target | pass/fail | our peak RSS (MiB) | qemu-img peak RSS (MiB) | identical to qemu-img's raw | our output allocated (MiB) |"
  echo "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "- ours: \`cdictl import FILE out.raw --progress none\` (writes a sparse file, fsyncs it, renames it into place)."
  echo "- qemu-img: \`qemu-img convert -f FORMAT -t writeback -O raw FILE out.raw\` (cache=writeback flushes the output on close; the format is given because qemu-img's probe takes a fixed vhd for raw)."
  echo "- identical: our output \`cmp\`ared with \`qemu-img convert -f FORMAT -O raw FILE\`, made untimed."
  echo "Images made in $MAKE_SECS s (reused while newer than disk.raw). Every run: $OUT/formats-runs.csv; stderr: $LOG."
} >"$OUT/formats-results.md"
echo
cat "$OUT/formats-results.md"
((FAILED == 0)) || { say "some runs failed or produced wrong output (see above)"; exit 1; }
exit 0
