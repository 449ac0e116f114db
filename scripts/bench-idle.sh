#!/usr/bin/env bash
# bench-idle.sh: what idle sessions cost one node. duet-bench idle holds
# SESSIONS sockets (from addresses spread over 127.0.0.0/8) that only
# answer pings and reads the node's RSS before and after; the table shows
# the median of RUNS runs by bytes per session, and the RSS that projects
# to 50,000 sessions. A benchmark, not a test.
#
#   scripts/bench-idle.sh [OUT.md]
#
# Knobs (env): SESSIONS (default: as many as this machine's open-file
# limit allows, at most 50000), RUNS=3, HOLD=20s.
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=$(ulimit -n)
SESSIONS=${SESSIONS:-$(( LIMIT - 500 < 50000 ? LIMIT - 500 : 50000 ))}
RUNS=${RUNS:-3}
HOLD=${HOLD:-20s}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
B="$TMP/duet-bench"
lift_limits

: >"$TMP/runs"
for r in $(seq "$RUNS"); do
	port=$("$B" port)
	DUET_HTTP_LISTEN=127.0.0.1:$port "$TMP/duet" serve >"$TMP/duet.log" 2>&1 &
	pid=$!
	PIDS+=($pid)
	"$B" ready "http://127.0.0.1:$port/readyz"
	"$B" idle -json -url "ws://127.0.0.1:$port/ws" -sessions "$SESSIONS" -rate 3000 -hold "$HOLD" -pid "$pid" >"$TMP/r$r.json" 2>>"$TMP/bench.log"
	kill "$pid"; wait "$pid" 2>/dev/null || true
	echo "$("$B" get "$TMP/r$r.json" node_bytes_per_session) $r" >>"$TMP/runs"
done
read -r _ med < <(sort -n "$TMP/runs" | sed -n "$(( (RUNS + 1) / 2 ))p")
R="$TMP/r$med.json"
g() { "$B" get "$R" "$1"; }
{
	echo "## Idle sessions on one node ($(nproc) cores, $(go env GOVERSION), median of $RUNS runs)"
	echo
	echo "Open-file limit here: $LIMIT (hard $(ulimit -Hn)), so $SESSIONS sessions per run."
	echo
	echo "| sessions held | connected | dropped while held | node RSS before → after | per session | 50,000 projected | goroutines | heap in use |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	awk -v s="$(g sessions)" -v c="$(g connected)" -v d="$(g dropped_while_holding)" -v b="$(g node_rss_before_bytes)" \
		-v a="$(g node_rss_after_bytes)" -v p="$(g node_bytes_per_session)" -v j="$(g projected_rss_50k_bytes)" \
		-v gr="$(g node_goroutines)" -v h="$(g node_heap_inuse_bytes)" \
		'BEGIN { printf "| %d | %d | %d | %.0f → %.0f MiB | %.1f KiB | %.0f MiB | %d | %.0f MiB |\n", s, c, d, b/1048576, a/1048576, p/1024, j/1048576, gr, h/1048576 }'
	echo
	echo "Every run (bytes per session): $(sort -n "$TMP/runs" | awk '{printf "%s%.0f", (NR > 1 ? ", " : ""), $1}')."
} >"$OUT"
