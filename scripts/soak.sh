#!/usr/bin/env bash
# soak.sh: thousands of simulated users churn (queue, match, ready, offer,
# answer, candidates, chat, leave, queue again) against two duet nodes on
# one Redis for SOAK_MINUTES; every minute it records each node's memory,
# goroutines, sessions and open rooms. Prints a Markdown report; a
# benchmark, not a test (it passes or fails nothing; read the drift).
#
#   scripts/soak.sh [OUT.md]
#
# Knobs (env): SOAK_MINUTES=30, USERS=2000, RATE=200 (matches/s target).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${SOAK_MINUTES:-30}
USERS=${USERS:-2000}
RATE=${RATE:-200}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
B="$TMP/duet-bench"
start_redis

lift_limits
export DUET_STORE_BACKEND=redis DUET_STORE_REDIS_ADDRS=127.0.0.1:$REDIS_PORT DUET_STORE_REDIS_KEY_PREFIX=soak:

BASES=()
URLS=""
for i in 1 2; do
	port=$("$B" port)
	DUET_HTTP_LISTEN=127.0.0.1:$port DUET_STORE_REDIS_NODE=soak$i "$TMP/duet" serve >>"$TMP/duet$i.log" 2>&1 & PIDS+=($!)
	"$B" ready "http://127.0.0.1:$port/readyz"
	BASES+=("http://127.0.0.1:$port")
	URLS+="${URLS:+,}ws://127.0.0.1:$port/ws"
done

"$B" match -urls "$URLS" -users "$USERS" -rate "$RATE" -warmup 5s -duration "${MINUTES}m" -json \
	>"$TMP/match.json" 2>"$TMP/match.log" & LOAD=$!
PIDS+=($LOAD)

{
	echo "## Soak: $USERS users, target $RATE matches/s, two nodes on one Redis, $MINUTES min"
	echo
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(go version | cut -d' ' -f3); load generator on the same machine."
	echo
	echo "| minute | node | RSS MiB | heap MiB | goroutines | sessions | rooms | matches so far |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$TMP/report.md"
for m in $(seq 1 "$MINUTES"); do
	sleep 60
	kill -0 "$LOAD" 2>/dev/null || { echo "soak: the load generator stopped early:" >&2; tail "$TMP/match.log" >&2; exit 1; }
	done_matches=$(grep -o '[0-9]* matches' "$TMP/match.log" | tail -1 | cut -d' ' -f1)
	for i in 0 1; do
		mapfile -t v < <("$B" metrics "${BASES[$i]}/metrics" process_resident_memory_bytes go_memstats_heap_inuse_bytes go_goroutines duet_sessions duet_rooms)
		awk -v m="$m" -v n=$((i + 1)) -v rss="${v[0]}" -v heap="${v[1]}" -v g="${v[2]}" -v s="${v[3]}" -v r="${v[4]}" -v d="${done_matches:-0}" \
			'BEGIN { printf "| %d | %d | %.0f | %.0f | %d | %d | %d | %s |\n", m, n, rss / 1048576, heap / 1048576, g, s, r, d }' >>"$TMP/report.md"
	done
	echo "soak: minute $m of $MINUTES" >&2
done
wait "$LOAD" || true
{
	echo
	echo "Load generator summary:"
	echo
	echo '```'
	cat "$TMP/match.json"
	echo '```'
} >>"$TMP/report.md"
cat "$TMP/report.md" >"$OUT"
