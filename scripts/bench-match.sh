#!/usr/bin/env bash
# bench-match.sh: matching load over real WebSockets with duet-bench, on
# the memory store (one node) and on Redis (one and two nodes), at full
# speed and at fixed rates. Prints a Markdown report; a benchmark, not a
# test (nothing here passes or fails).
#
#   scripts/bench-match.sh [OUT.md]
#
# Knobs (env): USERS=1000, SECONDS_=8 (measured per run, after WARMUP=2 s
# of warm-up), RUNS=3 (the table shows the median run by matches/s),
# RATE=1000, LOW_RATE=200 (the relay-latency rows: the load of the soak),
# REVS="" (git revisions to compare, e.g. REVS="abc123 HEAD": each is
# built from `git archive` and the runs of a row alternate between them,
# so that the builds share the machine's mood; empty: the working tree),
# ROWS="" (an extended regular expression: only the rows whose label
# matches, e.g. ROWS="1000/s"), PROCS="" (GOMAXPROCS values for the nodes,
# e.g. PROCS="1 2": every build runs once with each, side by side; empty:
# the Go default, every core), ROOMS=200 and CHAT_RATE=10 (the relay
# rows: rooms open at once, chats a second each side; the ping-pong rows
# keep one chat in flight per room instead), LOCKS=1 (run the nodes with
# metrics.lock_profile and report how long goroutines of the first node
# waited on locks per second of the measured window, and the share of
# that spent on the hub's lock).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000}
SECS=${SECONDS_:-8}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-3}
RATE=${RATE:-1000}
LOW_RATE=${LOW_RATE:-200}
REVS=${REVS:-}
ROWS=${ROWS:-}
PROCS=${PROCS:-}
LOCKS=${LOCKS:-}
ROOMS=${ROOMS:-200}
CHAT_RATE=${CHAT_RATE:-10}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
start_redis
# commandstats: one "command calls" line per command Redis has run
# (commands inside Lua scripts count one each).
cmdstats() { redis-cli -p "$REDIS_PORT" info commandstats | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'; }

lift_limits

BUILDS=()
if [ -z "$REVS" ]; then
	BUILDS=(tree)
	cp "$TMP/duet" "$TMP/duet-tree"
else
	for rev in $REVS; do
		b=$(git rev-parse --short "$rev")
		mkdir -p "$TMP/src-$b"
		git archive "$b" | tar -x -C "$TMP/src-$b"
		(cd "$TMP/src-$b" && go build -o "$TMP/duet-$b" ./cmd/duet)
		BUILDS+=("$b")
	done
fi
# A build runs as BIN@PROCS when PROCS is set: the same binary, with the
# nodes' GOMAXPROCS pinned.
if [ -n "$PROCS" ]; then
	WITH=()
	for b in "${BUILDS[@]}"; do for p in $PROCS; do WITH+=("$b@$p"); done; done
	BUILDS=("${WITH[@]}")
fi

NODE_PIDS=()
URLS=""
PORTS=()
export DUET_ADMIN_TOKEN=bench-token
[ "$LOCKS" = 1 ] && export DUET_METRICS_LOCK_PROFILE=true
start_nodes() { # build store count; sets URLS and NODE_PIDS (no subshell: the PIDs must survive)
	local build=${1%@*} store=$2 n=$3 i port prefix="bench$RANDOM$RANDOM:" procs=
	[[ $1 == *@* ]] && procs=${1#*@}
	NODE_PIDS=()
	URLS=""
	PORTS=()
	for i in $(seq "$n"); do
		port=$(free_port)
		DUET_HTTP_LISTEN=127.0.0.1:$port DUET_STORE_BACKEND=$store \
		DUET_STORE_REDIS_ADDRS=127.0.0.1:$REDIS_PORT DUET_STORE_REDIS_KEY_PREFIX="$prefix" \
		GOMAXPROCS=${procs:-$(nproc)} "$TMP/duet-$build" serve >>"$TMP/duet.log" 2>&1 &
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

# share BUILD NAME REGEX: percent of the profile's samples under frames matching REGEX
share() {
	go tool pprof -top -focus="$3" "$TMP/duet-${1%@*}" "$TMP/$2.pprof" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, \([0-9.]*%\) of .*/\1/p' | head -1
}

# lockwait RUNFILE BUILD: "s per s, hub share" from RUNFILE.mutex, the
# delay profile of the measured window; "-" without one.
lockwait() {
	[ -s "$1.mutex" ] || { echo "-"; return; }
	local total hub
	total=$(go tool pprof -top -unit=s "$TMP/duet-${2%@*}" "$1.mutex" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, [0-9.]*% of \([0-9.]*\)s total.*/\1/p' | head -1)
	hub=$(go tool pprof -top -unit=s -focus='signal\.\(\*Hub\)' "$TMP/duet-${2%@*}" "$1.mutex" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, \([0-9.]*%\) of .*/\1/p' | head -1)
	awk -v t="${total:-0}" -v s="$((SECS - 1))" -v h="${hub:-0%}" 'BEGIN { printf "%.3f, %s", t / s, h }'
}

# measure RUNFILE KIND RATE: one duet-bench run (KIND match or relay)
# against URLS; Redis's commands are counted over the measured window only
# (warm-up and teardown left out), into RUNFILE.cmds as "command calls"
# lines; with LOCKS=1 the first node's lock waits over the same window go
# to RUNFILE.mutex.
measure() {
	local f=$1 kind=$2 rate=$3 pid i prof=
	if [ "$kind" = relay ]; then
		"$TMP/duet-bench" relay -json -urls "$URLS" -rooms "$ROOMS" -rate "$rate" \
			-duration "${SECS}s" -warmup "${WARMUP}s" -pids "$(IFS=,; echo "${NODE_PIDS[*]}")" >"$f" 2>"$f.err" &
	else
		"$TMP/duet-bench" match -json -urls "$URLS" -users "$USERS" -duration "${SECS}s" -warmup "${WARMUP}s" -rate "$rate" \
			>"$f" 2>"$f.err" &
	fi
	pid=$!
	for i in $(seq 600); do grep -q "warming up" "$f.err" 2>/dev/null && break; sleep 0.05; done
	sleep "$WARMUP"
	cmdstats >"$f.cmds0"
	if [ "$LOCKS" = 1 ]; then
		curl -sf -H "Authorization: Bearer $DUET_ADMIN_TOKEN" -o "$f.mutex" \
			"http://127.0.0.1:${PORTS[0]}/debug/pprof/mutex?seconds=$((SECS - 1))" &
		prof=$!
	fi
	sleep "$SECS"
	cmdstats >"$f.cmds1"
	[ -z "$prof" ] || wait "$prof" || true
	wait "$pid" || echo '{"chats_per_s":0,"matches_per_s":0}' >"$f"
	cat "$f.err" >>"$TMP/bench.log"
	# (less the INFO that took the first count)
	awk 'NR == FNR { a[$1] = $2; next } $1 != "info" { d = $2 - a[$1]; if (d > 0) print $1, d }' "$f.cmds0" "$f.cmds1" >"$f.cmds"
}

# row KIND LABEL STORE NODES RATE: RUNS runs of each build; KIND match
# (duet-bench match, RATE matches a second, 0 for full speed) or relay
# (duet-bench relay: rooms that stay open and chat, RATE chats a second
# each side, 0 for ping-pong).
LABELS=()
row() {
	local kind=$1 label=$2 store=$3 nodes=$4 rate=$5 r b f
	if [ -n "$ROWS" ] && ! grep -qE -- "$ROWS" <<<"$label"; then return; fi
	local id="r${#LABELS[@]}"
	LABELS+=("$kind|$label|$store|$id")
	for r in $(seq "$RUNS"); do
		for b in "${BUILDS[@]}"; do
			f="$TMP/$id-$b-$r.json"
			start_nodes "$b" "$store" "$nodes"
			if [ "$kind" = match ] && [ "$r" = 1 ] && [ "$rate" = 0 ] && [ "$nodes" = 1 ]; then profile_node "${PORTS[0]}" "$store-$b"; fi
			measure "$f" "$kind" "$rate"
			stop_nodes
		done
	done
}

relay_report() {
	local l kind label store id b f
	grep -q '^relay|' < <(printf '%s\n' "${LABELS[@]}") || return 0
	echo
	echo "### Relay in open rooms ($ROOMS rooms, ${SECS}s per run, median of $RUNS by chats/s)"
	echo
	echo "| run | build | chats/s | relay same node p50 / p99 ms | relay cross node p50 / p99 ms | nodes' CPU, cores | nodes' CPU µs per chat | lock waits s/s, hub share |"
	echo "| --- | --- | ---: | --- | --- | ---: | ---: | --- |"
	for l in "${LABELS[@]}"; do
		IFS='|' read -r kind label store id <<<"$l"
		[ "$kind" = relay ] || continue
		for b in "${BUILDS[@]}"; do
			f=$(median "$id" "$b" chats_per_s)
			printf '| %s | %s | %.0f | %s | %s | %.2f | %.1f | %s |\n' "$label" "$b" "$(field chats_per_s "$f")" \
				"$(lat "$f" relay_same_node)" "$(lat "$f" relay_cross_node)" \
				"$(field node_cpu_cores "$f")" "$(field node_cpu_us_per_chat "$f")" "$(lockwait "$f" "$b")"
		done
	done
	echo
	echo "Ping-pong: one chat in flight per room, each answered on arrival, so the"
	echo "rate is what the node and the generator manage together on the shared cores."
	echo "A build@N ran its nodes with GOMAXPROCS=N. Lock waits (LOCKS=1): seconds goroutines of"
	echo "the first node spent waiting on contended locks per second of the window, and the share"
	echo "of that under the hub's methods (its read/write lock and the rooms' locks)."
}

# median ID BUILD [KEY]: the run file of the median run by KEY
# (matches_per_s unless given)
median() {
	local r
	for r in $(seq "$RUNS"); do echo "$(field "${3:-matches_per_s}" "$TMP/$1-$2-$r.json") $r"; done |
		sort -n | sed -n "$(( (RUNS + 1) / 2 ))p" | { read -r _ r; echo "$TMP/$1-$2-$r.json"; }
}

# per FILE: Redis commands per match over the measured window
per() {
	awk -v m="$(field matches "$1")" '{ c += $2 } END { if (m > 0) printf "%.1f", c / m; else print "-" }' "$1.cmds"
}

report() {
	local l kind label store id b f name
	echo "## Matching over WebSockets ($(nproc) cores, $(go env GOVERSION), $USERS users, ${SECS}s per run, median of $RUNS)"
	echo
	echo "| run | build | matches/s | register→notified p50 / p99 ms | relay same node p50 / p99 ms | relay cross node p50 / p99 ms | Redis commands per match | lock waits s/s, hub share |"
	echo "| --- | --- | ---: | --- | --- | --- | ---: | --- |"
	for l in "${LABELS[@]}"; do
		IFS='|' read -r kind label store id <<<"$l"
		[ "$kind" = match ] || continue
		for b in "${BUILDS[@]}"; do
			f=$(median "$id" "$b")
			printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$label" "$b" "$(field matches_per_s "$f")" \
				"$(lat "$f" register_to_notified)" "$(lat "$f" relay_same_node)" "$(lat "$f" relay_cross_node)" \
				"$([ "$store" = redis ] && per "$f" || echo -)" "$(lockwait "$f" "$b")"
		done
	done
	echo
	echo "Load generator and nodes share the machine. Commands per match: every"
	echo "command Redis ran in the measured window (INFO commandstats; heartbeats,"
	echo "announcements and commands inside scripts included) over the matches made in it."
	echo
	echo "Redis commands per match by command (median runs; EVALSHA is the script call, the"
	echo "commands it runs are counted under their own names):"
	echo
	echo "| run | build | by command |"
	echo "| --- | --- | --- |"
	for l in "${LABELS[@]}"; do
		IFS='|' read -r kind label store id <<<"$l"
		[ "$kind" = match ] && [ "$store" = redis ] || continue
		for b in "${BUILDS[@]}"; do
			f=$(median "$id" "$b")
			echo "| $label | $b | $(sort -k2 -nr "$f.cmds" | awk -v m="$(field matches "$f")" \
				'$2 / m >= 0.05 { printf "%s%s %.2f", (n++ ? ", " : ""), toupper($1), $2 / m }') |"
		done
	done
	echo
	echo "Where one node's CPU goes at full speed (a 5 s pprof CPU profile in the first run of each one-node full-speed row; share of the node's samples under each kind of frame, so shares overlap: JSON work allocates, and allocation is part of GC):"
	echo
	echo "| store | build | socket writes | socket reads | frame decode | JSON encode | allocation + GC | hub lock held (handleLocked) | matcher | Redis client |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for st in memory redis; do
		for b in "${BUILDS[@]}"; do
			name="$st-$b"
			[ -s "$TMP/$name.pprof" ] || continue
			echo "| $st | $b | $(share "$b" "$name" 'internal/poll.\(\*FD\).Write') | $(share "$b" "$name" 'internal/poll.\(\*FD\).Read') | $(share "$b" "$name" 'signal\.decode|signal\.parseCandidate') | $(share "$b" "$name" 'json.Marshal') | $(share "$b" "$name" 'runtime.mallocgc|runtime.gcBgMarkWorker|runtime.bgsweep|runtime.gcAssistAlloc') | $(share "$b" "$name" 'signal.\(\*Hub\).handleLocked') | $(share "$b" "$name" 'duet/matcher') | $(share "$b" "$name" 'go-redis') |"
		done
	done
}

row match "memory, 1 node, full speed" memory 1 0
row match "redis, 1 node, full speed" redis 1 0
row match "redis, 2 nodes, full speed" redis 2 0
row match "memory, 1 node, $RATE/s" memory 1 "$RATE"
row match "redis, 1 node, $RATE/s" redis 1 "$RATE"
row match "redis, 2 nodes, $RATE/s" redis 2 "$RATE"
row match "memory, 1 node, $LOW_RATE/s" memory 1 "$LOW_RATE"
row match "redis, 1 node, $LOW_RATE/s" redis 1 "$LOW_RATE"
row match "redis, 2 nodes, $LOW_RATE/s" redis 2 "$LOW_RATE"
row relay "relay, memory, 1 node, ping-pong" memory 1 0
row relay "relay, memory, 1 node, $CHAT_RATE chats/s each side" memory 1 "$CHAT_RATE"
row relay "relay, redis, 2 nodes, ping-pong" redis 2 0
row relay "relay, redis, 2 nodes, $CHAT_RATE chats/s each side" redis 2 "$CHAT_RATE"
{ report; relay_report; } >"$OUT"
