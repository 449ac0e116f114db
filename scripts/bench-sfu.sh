#!/usr/bin/env bash
# bench-sfu.sh: rooms of two strangers (duet-bench media: real ICE, DTLS
# and SRTP, nothing decoded) sending about 1.5 Mbps of video and 50 kbps
# of audio each way through duet's SFU (sfu.mode: always), stepping up
# the number of rooms. Prints a Markdown table: loss, the node's CPU per
# forwarded packet, the generator's, memory per room, and how busy the
# machine was. A benchmark, not a test (nothing here passes or fails).
#
#   scripts/bench-sfu.sh [OUT.md]
#
# Knobs (env): LEVELS="20 40", SECS=10, VIDEO_KBPS=1500, AUDIO_KBPS=50,
# RUNS=3 (each cell is the median of RUNS runs, column by column),
# BINS="label=/path/to/duet ..." to run builds side by side (each run of
# a level starts every build in turn, the order alternating run to run,
# so drift in the machine's load falls on all of them; default: this
# tree's build, labelled "duet"), PROFILE=1 to profile the node in each
# build's first run of each level and print where its CPU went.
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS=${LEVELS:-"20 40"}
RUNS=${RUNS:-3}
SECS=${SECS:-10}
VIDEO_KBPS=${VIDEO_KBPS:-1500}
AUDIO_KBPS=${AUDIO_KBPS:-50}
PROFILE=${PROFILE:-0}
OUT=${1:-/dev/stdout}
. scripts/bench-lib.sh
lift_limits
export DUET_ADMIN_TOKEN=bench-token
BINS=${BINS:-"duet=$TMP/duet"}
read -ra BUILDS <<<"$BINS"
get() { "$TMP/duet-bench" get "$2" "$1" 2>/dev/null || echo 0; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# one LABEL BIN ROOMS RUN: one media run against a fresh node; its JSON
# lands in $TMP/LABEL-ROOMS-RUN.json (nothing when the run failed).
one() {
	local label=$1 bin=$2 n=$3 r=$4 port sfu prof=()
	port=$(free_port)
	sfu=$(free_port)
	# DUET_SFU_ENABLED is for builds from before roles.sfu became the
	# only switch (aae8bde), so they run side by side; later ones warn
	# and ignore it.
	DUET_HTTP_LISTEN=127.0.0.1:$port DUET_PUBLIC_IP=127.0.0.1 DUET_ROLES_SFU=true DUET_SFU_ENABLED=true DUET_SFU_MODE=always \
	DUET_SFU_LISTEN_IP=127.0.0.1 DUET_SFU_UDP_PORT=$sfu DUET_SFU_TCP_PORT=$sfu \
		"$bin" serve >"$TMP/duet.log" 2>&1 &
	PID=$!
	PIDS+=($PID)
	"$TMP/duet-bench" ready "http://127.0.0.1:$port/readyz"
	if [ "$PROFILE" = 1 ] && [ "$r" = 1 ]; then
		prof=(-profile "$TMP/$label-$n.pprof" -token "$DUET_ADMIN_TOKEN")
	fi
	"$TMP/duet-bench" media -json -url "ws://127.0.0.1:$port/ws" -rooms "$n" -duration "${SECS}s" \
		-video-kbps "$VIDEO_KBPS" -audio-kbps "$AUDIO_KBPS" -pid "$PID" "${prof[@]}" \
		>"$TMP/$label-$n-$r.json" 2>>"$TMP/bench.log" || rm -f "$TMP/$label-$n-$r.json"
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
}

# col LABEL ROOMS FIELD SCALE: the median over the runs of FIELD x SCALE
col() {
	local f
	for f in "$TMP/$1-$2"-*.json; do
		[ -s "$f" ] && awk -v v="$(get "$3" "$f")" -v s="$4" 'BEGIN { printf "%.6f\n", v * s }'
	done | median
}

# share LABEL ROOMS REGEX: percent of the profile's samples under frames matching REGEX
share() {
	local bin=$3
	go tool pprof -top -focus="$4" "$bin" "$TMP/$1-$2.pprof" 2>/dev/null |
		sed -n 's/.*Showing nodes accounting for [^,]*, \([0-9.]*%\) of .*/\1/p' | head -1
}

{
	echo "## SFU forwarding ($(nproc) cores, $(go env GOVERSION), ${VIDEO_KBPS} kbps video + ${AUDIO_KBPS} kbps audio each way per stranger, ${SECS}s per step)"
	echo
	echo "Each cell is the median of $RUNS runs; the builds ran in turn within each run. Loss counts every packet a stranger sent that its partner never got (no retransmission: the generator does not NACK)."
	echo
	echo "| rooms | build | packets sent | loss % | worst direction loss % | node CPU s | node CPU µs per forwarded packet | generator CPU µs per forwarded packet | node RSS per room, streamed | machine busy % | CPU wait % | runs |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for n in $LEVELS; do
		for r in $(seq "$RUNS"); do
			order=("${BUILDS[@]}")
			if [ $((r % 2)) = 0 ]; then
				order=()
				for ((i = ${#BUILDS[@]} - 1; i >= 0; i--)); do order+=("${BUILDS[i]}"); done
			fi
			for b in "${order[@]}"; do
				one "${b%%=*}" "${b#*=}" "$n" "$r"
				echo "bench-sfu: $n rooms, run $r, ${b%%=*}: loss $(get loss "$TMP/${b%%=*}-$n-$r.json"), $(get node_cpu_us_per_packet "$TMP/${b%%=*}-$n-$r.json") µs/packet" >&2
			done
		done
		for b in "${BUILDS[@]}"; do
			label=${b%%=*}
			k=$(ls "$TMP/$label-$n"-*.json 2>/dev/null | wc -l)
			if [ "$k" = 0 ]; then
				echo "| $n | $label | every run failed: $(tail -1 "$TMP/bench.log") | | | | | | | | | 0 |"
				continue
			fi
			printf '| %d | %s | %.0f | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f MB | %.0f | %.0f | %d |\n' "$n" "$label" \
				"$(col "$label" "$n" packets_sent 1)" "$(col "$label" "$n" loss 100)" "$(col "$label" "$n" worst_loss 100)" \
				"$(col "$label" "$n" node_cpu_seconds 1)" "$(col "$label" "$n" node_cpu_us_per_packet 1)" \
				"$(col "$label" "$n" gen_cpu_us_per_packet 1)" "$(col "$label" "$n" node_rss_per_room_streamed_bytes 1e-6)" \
				"$(col "$label" "$n" box_cpu_busy 100)" "$(col "$label" "$n" box_cpu_pressure 100)" "$k"
		done
	done
	echo
	echo "The load generator (2 x rooms strangers) shares the machine with the node. Machine busy: both CPUs' busy share while streaming, whatever ran; CPU wait: the share of that time some task waited for a CPU (/proc/pressure/cpu)."
	if [ "$PROFILE" = 1 ]; then
		echo
		echo "Where the node's CPU went (a CPU profile over each build's first run of each level, but its first and last second; share of samples under each kind of frame, so shares overlap):"
		echo
		echo "| rooms | build | socket writes | socket reads | SRTP crypto | Go scheduler | GC and allocation | sent-packet ring | pion read path hand-offs |"
		echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		for n in $LEVELS; do
			for b in "${BUILDS[@]}"; do
				label=${b%%=*} bin=${b#*=}
				[ -s "$TMP/$label-$n.pprof" ] || continue
				echo "| $n | $label | $(share "$label" "$n" "$bin" 'syscall\.sendto$|sysConn\)\.sendmmsg') | $(share "$label" "$n" "$bin" 'syscall\.recvfrom$|sysConn\)\.recvmmsg') | $(share "$label" "$n" "$bin" 'fips140/aes') | $(share "$label" "$n" "$bin" '^runtime\.(schedule|findRunnable|park_m)$') | $(share "$label" "$n" "$bin" '^runtime\.(mallocgc|gcBgMarkWorker|bgsweep)$') | $(share "$label" "$n" "$bin" 'sendStream\)\.keep$') | $(share "$label" "$n" "$bin" 'packetio\.\(\*Buffer\)\.(Write|Read)$') |"
			done
		done
	fi
} >"$OUT"
