package node

// The proof-of-work gate (bots.pow): challenges at GET /api/pow/challenge,
// and the check the hub makes before a join. Both come from pow.Gate;
// this file picks its replay memory (Redis on a shared store), counts
// what happens, and limits how fast one address may ask.

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/pow"
	"github.com/duetchat/duet/signal"
)

// powChallengeRate and powChallengeBurst bound how often one address may
// ask for a challenge: a person asks once per pass, a page that reloads a
// few times more; the price grows with each anyway.
const (
	powChallengeRate  = rate.Limit(1)
	powChallengeBurst = 10
	// powMaxLimiters bounds the per-address limiters kept in memory.
	powMaxLimiters = 100000
)

// powGate is the node's proof-of-work gate: pow.Gate plus metrics.
type powGate struct {
	gate *pow.Gate
	log  *slog.Logger
	// clientKey is the hub's address key of a request's client (trusted
	// proxies believed as on /ws).
	clientKey func(*http.Request) string

	issued   prometheus.Counter
	admitted prometheus.Counter
	refused  *prometheus.CounterVec

	mu     sync.Mutex
	limits map[string]*rate.Limiter
}

// newPOWGate builds the gate from bots.*; spent is the replay memory
// (nil: this node's own memory). With no key it makes one and says why
// that is only fit for a single node.
func newPOWGate(cfg configs.Bots, spent pow.Spent, log *slog.Logger, reg prometheus.Registerer) (*powGate, error) {
	key := []byte(cfg.POWKey)
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		log.Warn("bots.pow is on without bots.pow_key: using a random key for this run; " +
			"nodes sharing a service need one key, or a challenge from one is refused by another")
	}
	if spent == nil {
		// One entry per solution used within an expiry: 200k covers
		// over 1,500 joins a second on one node.
		spent = pow.NewMemorySpent(200000, time.Now)
	}
	g, err := pow.New(pow.Options{
		Key: key, Spent: spent, Expiry: cfg.POWExpiry,
		Cost: int64(cfg.POWCost), MaxCost: int64(cfg.POWMaxCost),
		PassJoins: cfg.POWPassJoins, PassTTL: cfg.POWPassTTL,
	})
	if err != nil {
		return nil, err
	}
	p := &powGate{
		gate: g, log: log, limits: make(map[string]*rate.Limiter),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_pow_challenges_total", Help: "Proof-of-work challenges handed out.",
		}),
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_pow_admitted_total", Help: "Joins let through by the proof-of-work gate (a fresh solution or a pass).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_pow_refused_total", Help: "Joins refused by the proof-of-work gate, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{p.issued, p.admitted, p.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// newPOW builds the node's gate when bots.pow is on (nil when off): its
// replay memory is Redis on a shared store, so a solution spent on one
// node is spent on all.
func (n *Node) newPOW() (*powGate, error) {
	if !n.cfg.Bots.POW {
		return nil, nil
	}
	var spent pow.Spent
	if n.redis != nil {
		spent = pow.NewRedisSpent(n.redis.rdb, n.cfg.Store.Redis.KeyPrefix, time.Now)
	}
	p, err := newPOWGate(n.cfg.Bots, spent, n.log.With("role", "pow"), n.reg)
	if err != nil {
		return nil, fmt.Errorf("bots.pow: %w", err)
	}
	return p, nil
}

// gatekeeper is p as the hub's Gate; nil (joins are free) when p is.
func (p *powGate) gatekeeper() signal.Gatekeeper {
	if p == nil {
		return nil
	}
	return p
}

// Admit implements signal.Gatekeeper.
func (p *powGate) Admit(ctx context.Context, session, addr, payload string) error {
	err := p.gate.Admit(ctx, session, addr, payload)
	switch reason := pow.ReasonOf(err); {
	case err == nil:
		p.admitted.Inc()
	case reason != "":
		p.refused.WithLabelValues(reason).Inc()
	default:
		p.refused.WithLabelValues("store").Inc()
		p.log.Warn("proof-of-work replay memory failed", "err", err)
	}
	return err
}

// serveChallenge answers GET /api/pow/challenge with an ALTCHA challenge
// (JSON), or 429 in the protocol's error shape when the address asks too
// often.
func (p *powGate) serveChallenge(w http.ResponseWriter, r *http.Request) {
	addr := p.clientKey(r)
	if !p.allow(addr) {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]string{
			"type": "error", "code": "rate_limited", "message": "too many challenges asked for; wait a second",
		})
		return
	}
	c, err := p.gate.Issue(addr)
	if err != nil {
		p.log.Error("issuing a proof-of-work challenge", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"type": "error", "code": "internal", "message": "could not make a challenge",
		})
		return
	}
	p.issued.Inc()
	writeJSON(w, http.StatusOK, c)
}

// allow spends one token of addr's bucket. The table is bounded: when
// full it forgets the buckets that have refilled, or else all of them (a
// flood from that many addresses still pays for each challenge).
func (p *powGate) allow(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.limits[addr]
	if !ok {
		if len(p.limits) >= powMaxLimiters {
			for k, l := range p.limits {
				if l.Tokens() >= powChallengeBurst {
					delete(p.limits, k)
				}
			}
			if len(p.limits) >= powMaxLimiters {
				clear(p.limits)
			}
		}
		l = rate.NewLimiter(powChallengeRate, powChallengeBurst)
		p.limits[addr] = l
	}
	return l.Allow()
}
