#!/usr/bin/env bash
# bench-turn.sh: the same turnutils_uclient flood against duet's TURN relay
# and against coturn's turnserver, one after the other on this machine,
# stepping up the number of clients. Prints a Markdown table; a benchmark,
# not a test (nothing here passes or fails).
#
#   scripts/bench-turn.sh [OUT.md]
#
# Knobs (env): LEVELS="200" (clients; each run is ~25 s of uclient set-up
# and flood, so a sweep such as LEVELS="50 100 200 400" is for a longer
# session than make bench's 15 minutes), MSGS=500 (per client),
# LEN=170 (bytes), INTERVAL=5 (ms between a client's packets), MODES="channel"
# (what browsers use; MODES="channel send" adds Send/Data indications),
# RUNS=3 (each cell is the median of RUNS runs, column by column),
# BINS="label=/path/to/duet ..." to run duet builds side by side with
# coturn (every run starts each server in turn, the order rotating run
# to run, so drift in the machine's load falls on all of them; default:
# this tree's build, labelled "duet").
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS=${LEVELS:-"200"}
RUNS=${RUNS:-3}
MSGS=${MSGS:-500}
LEN=${LEN:-170}
INTERVAL=${INTERVAL:-5}
MODES=${MODES:-"channel"}
OUT=${1:-/dev/stdout}
SECRET=bench-secret
. scripts/bench-lib.sh

for tool in turnutils_uclient turnutils_peer turnserver; do
	command -v "$tool" >/dev/null || { echo "bench-turn: $tool missing (apt-get install -y coturn)" >&2; exit 1; }
done

# median of the numbers on stdin ("fail" sorts last)
median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

PEER_PORT=$(free_port)
turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 & PIDS+=($!)

BINS=${BINS:-"duet=$TMP/duet"}
read -ra BUILDS <<<"$BINS"

# start_duet PORT BIN HTTP_PORT
start_duet() {
	local port=$1 bin=$2 hport=$3
	DUET_HTTP_LISTEN=127.0.0.1:$hport DUET_PUBLIC_IP=127.0.0.1 \
	DUET_TURN_LISTEN_UDP=127.0.0.1:$port DUET_TURN_LISTEN_TCP=127.0.0.1:$port \
	DUET_ROLES_SFU=false \
	DUET_TURN_SECRET=$SECRET DUET_TURN_ALLOWED_PEER_CIDRS=127.0.0.1/32 \
	DUET_TURN_MAX_ALLOCATIONS_PER_USER=100000 DUET_TURN_MAX_ALLOCATIONS_PER_IP=0 DUET_TURN_RELAY_PORT_MIN=20000 DUET_TURN_RELAY_PORT_MAX=39999 \
	DUET_LOG_LEVEL=warn "$bin" serve >"$TMP/duet.log" 2>&1 &
	echo $!
}
start_coturn() {
	local port=$1
	turnserver -n --no-cli --no-tls --no-dtls --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
		--listening-port="$port" --min-port=20000 --max-port=39999 --use-auth-secret \
		--static-auth-secret=$SECRET --realm=duet --allow-loopback-peers \
		--pidfile="$TMP/turnserver.pid" --log-file="$TMP/coturn.log" >/dev/null 2>&1 &
	echo $!
}

# relayed METRICS_URL: what duet says it relayed, both directions
relayed() { "$TMP/duet-bench" metrics "$1" duet_turn_relayed_packets_total 2>/dev/null || echo 0; }

# run PORT PID MODE CLIENTS [METRICS_URL] -> "transmit_s loss_pct cpu_s cpu_us"
run() {
	local port=$1 pid=$2 mode=$3 m=$4 metrics=${5:-} extra=()
	[ "$mode" = send ] && extra=(-s)
	local before after out r0=0
	[ -n "$metrics" ] && r0=$(relayed "$metrics")
	before=$(cpu_ticks "$pid")
	out=$(timeout 300 turnutils_uclient -c "${extra[@]}" -W $SECRET -e 127.0.0.1 -r "$PEER_PORT" \
		-m "$m" -n "$MSGS" -l "$LEN" -z "$INTERVAL" -p "$port" 127.0.0.1 2>&1 || true)
	after=$(cpu_ticks "$pid")
	local tt loss
	tt=$(sed -n 's/.*Total transmit time is \([0-9]*\).*/\1/p' <<<"$out" | tail -1)
	loss=$(sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' <<<"$out" | tail -1)
	# A flood uclient reports whole but that duet did not relay did not
	# cross this node (seen by hand: a node left over from an earlier run
	# sharing the port, and runs not settled); its CPU would read as a
	# cheap relay, so it counts as failed.
	if [ -n "$metrics" ] && [ -n "$loss" ]; then
		local got claimed
		got=$(awk -v a="$(relayed "$metrics")" -v b="$r0" 'BEGIN { print a - b }')
		claimed=$(awk -v n=$((2 * m * MSGS)) -v l="$loss" 'BEGIN { printf "%d", n * (1 - l / 100) }')
		if awk -v got="$got" -v want="$claimed" 'BEGIN { exit !(got < 0.9 * want) }'; then
			echo "bench-turn: uclient reports $claimed datagrams relayed, duet counted $got: run not counted" >&2
			echo "fail fail fail fail"
			return
		fi
	fi
	# CPU per relayed datagram: each client's messages cross the relay
	# twice (to the peer and back), less what was lost.
	echo "${tt:-fail} ${loss:-fail} $(awk -v t=$((after - before)) -v h="$TICKS" -v n=$((2 * m * MSGS)) -v l="${loss:-100}" \
		'BEGIN { c = t / h; r = n * (1 - l / 100); printf "%.2f %.2f", c, (r > 0 ? c * 1e6 / r : 0) }')"
}

{
	echo "### TURN: duet vs coturn, same turnutils_uclient flood"
	echo
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(go version | cut -d' ' -f3); coturn $(turnserver --version 2>/dev/null | head -1)."
	echo "Each client sends $MSGS messages of $LEN bytes every ${INTERVAL} ms to a turnutils_peer echo on loopback and counts what comes back (\`turnutils_uclient -c -m N -n $MSGS -l $LEN -z $INTERVAL [-s]\`). Offered rate = N x $((1000 / INTERVAL)) packets/s each way. CPU = server process user+system seconds during the run."
	echo
	echo "Each cell is the median of $RUNS runs; the servers ran in turn within each run. CPU per relayed datagram divides the CPU by what crossed the relay (2 x clients x messages, less the loss), so a run that lost packets to a busy machine is not counted as cheap."
	echo
	echo "| mode | clients | offered pkt/s | server | time s | loss % | CPU s | CPU µs per relayed datagram | that vs coturn | loss-free runs |"
	echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$OUT"

SERVERS=("${BUILDS[@]}" coturn=coturn)
for mode in $MODES; do
	for m in $LEVELS; do
		for b in "${SERVERS[@]}"; do : >"$TMP/${b%%=*}"; done
		for r in $(seq "$RUNS"); do
			# rotate the order run to run
			order=("${SERVERS[@]:$(( (r - 1) % ${#SERVERS[@]} ))}" "${SERVERS[@]:0:$(( (r - 1) % ${#SERVERS[@]} ))}")
			for b in "${order[@]}"; do
				label=${b%%=*} bin=${b#*=} port=$(free_port) metrics=""
				if [ "$bin" = coturn ]; then
					pid=$(start_coturn "$port")
				else
					hport=$(free_port)
					pid=$(start_duet "$port" "$bin" "$hport")
					metrics="http://127.0.0.1:$hport/metrics"
				fi
				PIDS+=("$pid")
				sleep 1
				run "$port" "$pid" "$mode" "$m" "$metrics" >>"$TMP/$label"
				kill "$pid"; wait "$pid" 2>/dev/null || true
				echo "bench-turn: $mode m=$m run $r $label: $(tail -1 "$TMP/$label")" >&2
			done
		done
		col() { awk -v k="$2" '{print $k}' "$1" | median; }
		cc=$(col "$TMP/coturn" 4)
		for b in "${SERVERS[@]}"; do
			label=${b%%=*}
			c=$(col "$TMP/$label" 4)
			echo "| $mode | $m | $((m * 1000 / INTERVAL)) | $label | $(col "$TMP/$label" 1) | $(col "$TMP/$label" 2) | $(col "$TMP/$label" 3) | $c | $(awk -v a="$c" -v b="$cc" 'BEGIN { if (b > 0) printf "%.2fx", a / b }') | $(awk '$2 == 0 { n++ } END { print n + 0 }' "$TMP/$label")/$RUNS |" >>"$OUT"
		done
	done
done
