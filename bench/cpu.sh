#!/usr/bin/env bash
# Client CPU of kye builds side by side against one loopback server, interleaved:
#   bench/cpu.sh N REPS SIZE name=PATH-TO-KYE-BENCH [name=PATH ...]
# SIZE is `real` or a document size in bytes. The first binary also serves and runs the
# `floor + parse` side. Prints one line per run (side, user s, sys s, wall s, peak RSS KiB) and
# the load before and after; the medians are left to the reader (bench/README.md quotes them).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,6p' "$0"; exit 2; }
n=$1 reps=$2 size=$3
shift 3
serve_bin=${1#*=}
out=$(mktemp)
fifo=$(mktemp -u)
mkfifo "$fifo"
# The server serves until its stdin closes: keep a writer open on the fifo until the end.
"$serve_bin" serve "$n" "$size" < "$fifo" > "$out" &
server=$!
exec 3> "$fifo"
trap 'exec 3>&-; wait "$server" 2>/dev/null || true; rm -f "$fifo" "$out" /tmp/kye-cpu.db*' EXIT
for _ in $(seq 600); do grep -q '^BASE ' "$out" && break; sleep 1; done
base=$(awk '/^BASE /{print $2; exit}' "$out")
[ -n "$base" ] || { echo "the server did not start" >&2; exit 1; }
uptime
for _ in $(seq "$reps"); do
    /usr/bin/time -f "floor+parse %U %S %e %M" "$serve_bin" floor "$base" "$n" 16 parse 2>&1 >/dev/null
    for side in "$@"; do
        rm -f /tmp/kye-cpu.db*
        /usr/bin/time -f "${side%%=*} %U %S %e %M" "${side#*=}" kye-fetch "$base" "$n" 16 /tmp/kye-cpu.db 2>&1 >/dev/null
    done
done
uptime
