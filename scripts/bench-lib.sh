# bench-lib.sh: what every benchmark script shares; source it from the
# repository root (the scripts cd there first).
#
# It makes TMP (removed on exit), PIDS (killed on exit: append every
# process you start), builds duet and duet-bench into TMP, and defines
# free_port, start_redis and lift_limits.

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

go build -o "$TMP/duet" ./cmd/duet
go build -o "$TMP/duet-bench" ./cmd/duet-bench
free_port() { "$TMP/duet-bench" port; }

# start_redis: a throw-away redis-server on a free port; sets REDIS_PORT.
start_redis() {
	command -v redis-server >/dev/null || { echo "$(basename "$0"): redis-server missing (apt-get install -y redis-server)" >&2; exit 1; }
	REDIS_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 & PIDS+=($!)
	for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# lift_limits: the load generator is one client address (or a few), so
# lift the per-address and per-session limits that exist to stop abuse,
# not load tests; quiet logs, and no TURN or SFU unless a script asks.
lift_limits() {
	export DUET_LIMITS_CONNECTIONS_PER_IP=100000 DUET_LIMITS_CONNECT_RATE_PER_IP=100000 \
		DUET_LIMITS_CONNECT_BURST_PER_IP=100000 DUET_LIMITS_SESSIONS_PER_IP=1000000 \
		DUET_LIMITS_IP_MESSAGE_RATE=10000000 DUET_LIMITS_IP_MESSAGE_BURST=10000000 \
		DUET_LIMITS_QUEUE_RATE=10000 DUET_LIMITS_QUEUE_BURST=10000 \
		DUET_LIMITS_JOINS_PER_MINUTE=1000000 DUET_LIMITS_IP_JOINS_PER_MINUTE=10000000 \
		DUET_LIMITS_CHAT_RATE=10000 DUET_LIMITS_CHAT_BURST=10000 \
		DUET_LIMITS_MESSAGE_RATE=10000 DUET_LIMITS_MESSAGE_BURST=10000 \
		DUET_LIMITS_SIGNAL_RATE=10000 DUET_LIMITS_SIGNAL_BURST=10000 \
		DUET_ROLES_TURN=false DUET_ROLES_SFU=false DUET_LOG_LEVEL=warn
}
