package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/cluster"
	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/signal"
)

// shared is what a node on the Redis store adds: the client, the store's
// heartbeat and the hub-to-hub bus.
type shared struct {
	rdb     redis.UniversalClient
	passRdb redis.UniversalClient
	busRdb  redis.UniversalClient
	store   *matcher.RedisStore
	bus     *cluster.RedisBus
	metrics *matcher.RedisMetrics
}

// nodeName is the configured name, or host name plus a random suffix so a
// restarted process never inherits its predecessor's tickets.
func nodeName(cfg configs.Redis) string {
	if cfg.Node != "" {
		return cfg.Node
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "duet"
	}
	host = strings.NewReplacer("{", "", "}", "", ":", "", " ", "").Replace(host)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func redisTLS(cfg configs.Redis) (*tls.Config, error) {
	if !cfg.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.redis.tls_ca_file %s: no PEM certificates in it", cfg.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// openRedis connects the store and the bus. An unreachable Redis is not
// fatal: the node starts not ready and recovers when Redis answers.
func openRedis(cfg configs.Redis, log *slog.Logger, reg prometheus.Registerer, reset func(), lost func(signal.Envelope)) (*shared, error) {
	tc, err := redisTLS(cfg)
	if err != nil {
		return nil, err
	}
	opts := &redis.UniversalOptions{
		Addrs:     cfg.Addrs,
		Username:  cfg.Username,
		Password:  cfg.Password,
		DB:        cfg.DB,
		TLSConfig: tc,
		// Fail fast while Redis is away: a client waiting on a dead
		// Redis is better told "unavailable" than left hanging.
		DialTimeout:   time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		MaxRetries:    1,
		DialerRetries: 1,
		// A caller's deadline shorter than ReadTimeout (a join's, a
		// leave's) then bounds the socket read too, handshakes included.
		ContextTimeoutEnabled: true,
	}
	rdb := redis.NewUniversalClient(opts)
	// The pairing pass gets its own small pool: its round trips set the
	// match latency and must not wait behind a burst of joins.
	passOpts := *opts
	passOpts.PoolSize = 2
	passRdb := redis.NewUniversalClient(&passOpts)
	// So does the hub-to-hub bus: relay latency is its round trip.
	busRdb := redis.NewUniversalClient(&passOpts)
	metrics, err := matcher.NewRedisMetrics(reg)
	if err != nil {
		_ = rdb.Close()
		_ = passRdb.Close()
		_ = busRdb.Close()
		return nil, err
	}
	metrics.Instrument(rdb)
	metrics.Instrument(passRdb)
	metrics.Instrument(busRdb)
	name := nodeName(cfg)
	store := matcher.NewRedisStore(rdb, cfg.KeyPrefix, metrics.Options(matcher.RedisOptions{Node: name, OnReset: reset, PassClient: passRdb}))
	bus := cluster.New(busRdb, cluster.Options{
		Node: name, KeyPrefix: cfg.KeyPrefix, Alive: store.NodeAlive,
		Lag: metrics.Options(matcher.RedisOptions{}).PubSubLag, Lost: lost, Logger: log.With("role", "cluster"),
	})
	if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "duet_cluster_dropped_total",
		Help: "Hub-to-hub envelopes and resume records lost to a full queue or a failed Redis write.",
	}, func() float64 { return float64(bus.Dropped()) })); err != nil {
		_ = rdb.Close()
		_ = passRdb.Close()
		_ = busRdb.Close()
		return nil, fmt.Errorf("registering cluster metrics: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		log.Warn("Redis is not answering yet; the node stays not ready until it does",
			"addrs", cfg.Addrs, "err", err)
	}
	log.Info("store on Redis", "node", name, "addrs", cfg.Addrs, "cluster", len(cfg.Addrs) > 1)
	return &shared{rdb: rdb, passRdb: passRdb, busRdb: busRdb, store: store, bus: bus, metrics: metrics}, nil
}

func (s *shared) close() error {
	for _, c := range []redis.UniversalClient{s.rdb, s.passRdb, s.busRdb} {
		if err := c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			return fmt.Errorf("closing Redis client: %w", err)
		}
	}
	return nil
}

// sharedSalt is the IP-hash salt every node on this Redis uses: the first
// node to ask sets it, the others read it. It lives as long as the Redis
// data; a Redis that comes back empty starts a new one for new nodes.
func sharedSalt(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]byte, error) {
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	key := prefix + "ip-salt"
	if err := rdb.SetNX(ctx, key, fresh, 0).Err(); err != nil {
		return nil, fmt.Errorf("setting the shared IP salt: %w", err)
	}
	salt, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		return nil, fmt.Errorf("reading the shared IP salt: %w", err)
	}
	return salt, nil
}
