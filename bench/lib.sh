# bench/lib.sh: helpers shared by the benchmark scripts (sourced, not run).
# Callers set OUT (output directory) and LOG (run log) before calling timed.

die() { printf 'bench: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'bench: %s\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# timed STDOUT CMD... : runs CMD under GNU time; sets T_WALL (s), T_USER, T_SYS (s), T_RSS (KiB).
# Returns CMD's exit status. stderr goes to the run log.
timed() {
  local stdout=$1 tf=$OUT/.time rc=0 t0 t1
  shift
  printf '\n$ %s\n' "$*" >>"$LOG"
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$stdout" 2>>"$LOG" || rc=$?
  t1=$EPOCHREALTIME
  T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  read -r T_RSS T_USER T_SYS < <(tail -n 1 "$tf")
  if [[ $stdout != /dev/null && -s $stdout ]]; then cat "$stdout" >>"$LOG"; fi
  return "$rc"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
  if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
alloc_mib() { awk -v b="$(stat -c %b "$1")" -v s="$(stat -c %B "$1")" 'BEGIN { printf "%.0f", b * s / 1048576 }'; }

# A loopback port nobody listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Whether something listens on loopback port $1.
listening() { [[ -n $(ss -Hltn "sport = :$1") ]]; }
# stop_timed PID: stops a process and waits for it; for one started under GNU time, its
# children (the timed command) first.
stop_timed() {
  [[ -n $1 ]] || return 0
  local child
  for child in $(pgrep -P "$1" || true); do kill "$child" 2>/dev/null || true; done
  if kill "$1" 2>/dev/null; then wait "$1" 2>/dev/null || true; fi
}
# await_listening PORT PID: waits up to 20 s for PORT to listen; fails at once if PID exits.
await_listening() {
  local i
  for ((i = 0; i < 2000; i++)); do
    listening "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}
