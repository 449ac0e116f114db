#!/usr/bin/env bash
# bench-match.sh: matching load over real WebSockets with duet-bench, on
# the memory store (one node) and on Redis (one and two nodes), at full
# speed and at a fixed 1,000 matches/s. Prints a Markdown report; a
# benchmark, not a test (nothing here passes or fails).
#
#   scripts/bench-match.sh [OUT.md]
#
# Knobs (env): USERS=1000, SECONDS_=8 (measured per run, after 2 s of warm-up), RUNS=3 (the
# table shows the median run by matches/s), RATE=1000, LOW_RATE=200 (the
# relay-latency rows: the load of the soak).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000}
SECS=${SECONDS_:-8}
RUNS=${RUNS:-3}
RATE=${RATE:-1000}
LOW_RATE=${LOW_RATE:-200}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
start_redis
redis_cmds() { redis-cli -p "$REDIS_PORT" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }

lift_limits

NODE_PIDS=()
URLS=""
PORTS=()
export DUET_ADMIN_TOKEN=bench-token
start_nodes() { # store count; sets URLS and NODE_PIDS (no subshell: the PIDs must survive)
	local store=$1 n=$2 i port prefix="bench$RANDOM$RANDOM:"
	NODE_PIDS=()
	URLS=""
	PORTS=()
	for i in $(seq "$n"); do
		port=$(free_port)
		DUET_HTTP_LISTEN=127.0.0.1:$port DUET_STORE_BACKEND=$store \
		DUET_STORE_REDIS_ADDRS=127.0.0.1:$REDIS_PORT DUET_STORE_REDIS_KEY_PREFIX="$prefix" \
			"$TMP/duet" serve >>"$TMP/duet.log" 2>&1 &
		NODE_PIDS+=($!)
		PORTS+=("$port")
		"$TMP/duet-bench" ready "http://127.0.0.1:$port/readyz"
		URLS+="${URLS:+,}ws://127.0.0.1:$port/ws"
	done
}
stop_nodes() {
	for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
field() { "$TMP/duet-bench" get "$2" "$1"; }
# p50 / p99 of one summary object in a JSON result
lat() {
	if [ "$(field "$2.n" "$1")" = 0 ]; then echo "-"; return; fi
	echo "$(field "$2.p50_ms" "$1") / $(field "$2.p99_ms" "$1")"
}

# profile_node PORT NAME: a 5 s CPU profile of the node, in the background,
# starting 3 s after the node does (about when the generator's warm-up
# ends) and so inside the measured 8 s (the first run of each one-node
# full-speed row).
profile_node() {
	(sleep 3; curl -sf -H "Authorization: Bearer $DUET_ADMIN_TOKEN" \
		"http://127.0.0.1:$1/debug/pprof/profile?seconds=5" -o "$TMP/$2.pprof") &
}

# share NAME REGEX: percent of the profile's samples under frames matching REGEX
share() {
	go tool pprof -top -focus="$2" "$TMP/duet" "$TMP/$1.pprof" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, \([0-9.]*%\) of .*/\1/p' | head -1
}

row() { # label store nodes rate
	local label=$1 store=$2 nodes=$3 rate=$4 best="" r before after
	: >"$TMP/runs"
	for r in $(seq "$RUNS"); do
		start_nodes "$store" "$nodes"
		if [ "$r" = 1 ] && [ "$rate" = 0 ] && [ "$nodes" = 1 ]; then profile_node "${PORTS[0]}" "$store"; fi
		before=$(redis_cmds)
		"$TMP/duet-bench" match -json -urls "$URLS" -users "$USERS" -duration "${SECS}s" -warmup 2s -rate "$rate" \
			>"$TMP/run$r.json" 2>>"$TMP/bench.log"
		after=$(redis_cmds)
		stop_nodes
		echo "$(field matches_per_s "$TMP/run$r.json") $r $((after - before))" >>"$TMP/runs"
	done
	# the median run by matches/s
	read -r _ best cmds < <(sort -n "$TMP/runs" | sed -n "$(( (RUNS + 1) / 2 ))p")
	local f="$TMP/run$best.json" m per
	m=$(field matches "$f")
	per="-"
	if [ "$store" = redis ] && [ "${m:-0}" -gt 0 ]; then per=$(awk -v c="$cmds" -v m="$m" 'BEGIN{printf "%.1f", c/m}'); fi
	printf '| %s | %.0f | %s | %s | %s | %s |\n' "$label" "$(field matches_per_s "$f")" \
		"$(lat "$f" register_to_notified)" "$(lat "$f" relay_same_node)" "$(lat "$f" relay_cross_node)" "$per"
}

{
	echo "## Matching over WebSockets ($(nproc) cores, $(go env GOVERSION), $USERS users, ${SECS}s per run, median of $RUNS)"
	echo
	echo "| run | matches/s | register→notified p50 / p99 ms | relay same node p50 / p99 ms | relay cross node p50 / p99 ms | Redis commands per match |"
	echo "| --- | ---: | --- | --- | --- | ---: |"
	row "memory, 1 node, full speed" memory 1 0
	row "redis, 1 node, full speed" redis 1 0
	row "redis, 2 nodes, full speed" redis 2 0
	row "memory, 1 node, $RATE/s" memory 1 "$RATE"
	row "redis, 1 node, $RATE/s" redis 1 "$RATE"
	row "redis, 2 nodes, $RATE/s" redis 2 "$RATE"
	row "memory, 1 node, $LOW_RATE/s" memory 1 "$LOW_RATE"
	row "redis, 2 nodes, $LOW_RATE/s" redis 2 "$LOW_RATE"
	echo
	echo "Load generator and nodes share the machine. Commands per match count every"
	echo "command Redis processed during the run (heartbeats and wake-ups included) over the matches made."
	echo
	echo "Where one node's CPU goes at full speed (a 5 s pprof CPU profile in the first run of each one-node full-speed row; share of the node's samples under each kind of frame, so shares overlap: JSON work allocates, and allocation is part of GC):"
	echo
	echo "| store | socket writes | socket reads | frame decode | JSON encode | allocation + GC | hub lock held (handleLocked) | matcher | Redis client |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for st in memory redis; do
		[ -s "$TMP/$st.pprof" ] || continue
		echo "| $st | $(share $st 'internal/poll.\(\*FD\).Write') | $(share $st 'internal/poll.\(\*FD\).Read') | $(share $st 'signal\.decode|signal\.parseCandidate') | $(share $st 'json.Marshal') | $(share $st 'runtime.mallocgc|runtime.gcBgMarkWorker|runtime.bgsweep|runtime.gcAssistAlloc') | $(share $st 'signal.\(\*Hub\).handleLocked') | $(share $st 'duet/matcher') | $(share $st 'go-redis') |"
	done
} >"$OUT"
