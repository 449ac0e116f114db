#!/usr/bin/env bash
# bench-sfu.sh: rooms of two pion peers (duet-bench media) sending about
# 1.5 Mbps of video and 50 kbps of audio each way through duet's SFU
# (sfu.mode: always), stepping up the number of rooms. Prints a Markdown
# table: loss, the node's CPU per forwarded packet, memory per room. A
# benchmark, not a test (nothing here passes or fails).
#
#   scripts/bench-sfu.sh [OUT.md]
#
# Knobs (env): LEVELS="20 40", SECS=10, VIDEO_KBPS=1500, AUDIO_KBPS=50,
# RUNS=3 (each row is the median run by loss).
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS=${LEVELS:-"20 40"}
RUNS=${RUNS:-3}
SECS=${SECS:-10}
VIDEO_KBPS=${VIDEO_KBPS:-1500}
AUDIO_KBPS=${AUDIO_KBPS:-50}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
lift_limits
get() { "$TMP/duet-bench" get "$2" "$1"; }

{
	echo "## SFU forwarding ($(nproc) cores, $(go env GOVERSION), ${VIDEO_KBPS} kbps video + ${AUDIO_KBPS} kbps audio each way per stranger, ${SECS}s per step)"
	echo
	echo "Each row is the median run (by loss) of $RUNS."
	echo
	echo "| rooms | packets sent | loss % | worst direction loss % | node CPU s | node CPU µs per forwarded packet | node RSS per room | runs |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for n in $LEVELS; do
		: >"$TMP/runs"
		for r in $(seq "$RUNS"); do
			port=$("$TMP/duet-bench" port)
			sfu=$("$TMP/duet-bench" port)
			DUET_HTTP_LISTEN=127.0.0.1:$port DUET_PUBLIC_IP=127.0.0.1 DUET_SFU_MODE=always \
			DUET_SFU_LISTEN_IP=127.0.0.1 DUET_SFU_UDP_PORT=$sfu DUET_SFU_TCP_PORT=$sfu \
				"$TMP/duet" serve >"$TMP/duet.log" 2>&1 &
			PID=$!
			PIDS+=($PID)
			"$TMP/duet-bench" ready "http://127.0.0.1:$port/readyz"
			if "$TMP/duet-bench" media -json -url "ws://127.0.0.1:$port/ws" -rooms "$n" -duration "${SECS}s" \
				-video-kbps "$VIDEO_KBPS" -audio-kbps "$AUDIO_KBPS" -pid "$PID" >"$TMP/r$r.json" 2>>"$TMP/bench.log"; then
				echo "$(get loss "$TMP/r$r.json") $r" >>"$TMP/runs"
			fi
			kill "$PID" 2>/dev/null || true
			wait "$PID" 2>/dev/null || true
		done
		if [ ! -s "$TMP/runs" ]; then
			echo "| $n | every run failed: $(tail -1 "$TMP/bench.log") | | | | | |"
			continue
		fi
		# the median run by loss
		read -r _ med < <(sort -g "$TMP/runs" | sed -n "$(( ($(wc -l <"$TMP/runs") + 1) / 2 ))p")
		R="$TMP/r$med.json"
		awk -v n="$n" -v s="$(get packets_sent "$R")" -v l="$(get loss "$R")" \
			-v w="$(get worst_loss "$R")" -v c="$(get node_cpu_seconds "$R")" \
			-v u="$(get node_cpu_us_per_packet "$R")" -v m="$(get node_rss_per_room_bytes "$R")" -v k="$(wc -l <"$TMP/runs")" \
			'BEGIN { printf "| %d | %d | %.2f | %.2f | %.2f | %.1f | %.1f MB | %d |\n", n, s, l*100, w*100, c, u, m/1e6, k }'
	done
	echo
	echo "The load generator (2 x rooms pion peers) shares the machine with the node."
} >"$OUT"
