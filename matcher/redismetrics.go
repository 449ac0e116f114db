package matcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisMetrics are the Redis backend's Prometheus series.
type RedisMetrics struct {
	roundTrip *prometheus.HistogramVec
	errs      *prometheus.CounterVec
	orphans   prometheus.Counter
	lag       prometheus.Histogram
	// lastReply is when Redis last answered anything on an instrumented
	// client (unix ns): a busy Redis answers, a stalled or gone one not.
	lastReply *atomic.Int64
}

// NewRedisMetrics registers the series on reg.
func NewRedisMetrics(reg prometheus.Registerer) (*RedisMetrics, error) {
	m := &RedisMetrics{
		lastReply: &atomic.Int64{},
		roundTrip: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "duet_redis_roundtrip_seconds",
			Help:    "Redis round trips, by command (pipelines as \"pipeline\").",
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 12),
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_redis_errors_total",
			Help: "Redis commands that failed, by kind: timeout, network (no answer) or reply (Redis answered with an error).",
		}, []string{"kind"}),
		orphans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_redis_orphans_total",
			Help: "Waiting tickets dropped because their node stopped beating.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "duet_redis_pubsub_lag_seconds",
			Help:    "Publish-to-receive delay of matcher wake-ups.",
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 12),
		}),
	}
	for _, c := range []prometheus.Collector{m.roundTrip, m.errs, m.orphans, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering Redis metrics: %w", err)
		}
	}
	// Every kind exists from the start, so rate() in an alert sees the
	// first error rather than a series that appears with it.
	for _, kind := range []string{"timeout", "network", "reply"} {
		m.errs.WithLabelValues(kind)
	}
	return m, nil
}

// Instrument times every command rdb sends.
func (m *RedisMetrics) Instrument(rdb redis.UniversalClient) {
	rdb.AddHook(timingHook{m.roundTrip, m.errs, m.lastReply})
}

// LastReply is when Redis last answered a command of an instrumented
// client, an error reply included (zero: never).
func (m *RedisMetrics) LastReply() time.Time {
	if ns := m.lastReply.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// answered records a reply: a command that came back without a network
// error or a timeout.
func answered(last *atomic.Int64, err error) {
	var rerr redis.Error
	if err == nil || errors.Is(err, redis.Nil) || errors.As(err, &rerr) {
		last.Store(time.Now().UnixNano())
	}
}

// Options fills the store callbacks that feed these metrics.
func (m *RedisMetrics) Options(opt RedisOptions) RedisOptions {
	opt.Orphans = func(n int) { m.orphans.Add(float64(n)) }
	opt.PubSubLag = func(d time.Duration) { m.lag.Observe(d.Seconds()) }
	return opt
}

type timingHook struct {
	h    *prometheus.HistogramVec
	errs *prometheus.CounterVec
	last *atomic.Int64
}

func (timingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t timingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		t.h.WithLabelValues(opName(cmd)).Observe(time.Since(start).Seconds())
		answered(t.last, err)
		t.count(err)
		return err
	}
}

func (t timingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		t.h.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		answered(t.last, err)
		t.count(err)
		return err
	}
}

func (t timingHook) count(err error) {
	if kind := errorKind(err); kind != "" {
		t.errs.WithLabelValues(kind).Inc()
	}
}

// errorKind sorts a command's error for duet_redis_errors_total; "" is
// not an error worth an operator's attention: none, a missing key, a
// script Redis has not cached yet (go-redis loads it and retries) or a
// caller that gave up.
func errorKind(err error) string {
	var rerr redis.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return ""
	case errors.As(err, &rerr):
		if strings.HasPrefix(rerr.Error(), "NOSCRIPT") {
			return ""
		}
		return "reply"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	}
	return "network"
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// opName keeps the label set small: scripts are "evalsha", everything
// else its command name.
func opName(cmd redis.Cmder) string {
	return strings.ToLower(cmd.Name())
}
