package pow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Options configure a Gate. Key and Spent are required; zero values
// elsewhere take the defaults in brackets.
type Options struct {
	// Key signs challenges; every node of a service needs the same one.
	Key []byte
	// Spent remembers the solutions already used.
	Spent Spent
	// Expiry is how long a challenge may be solved and used [2m].
	Expiry time.Duration
	// Cost is the maxnumber of a challenge for an address that joins
	// rarely [200000]; MaxCost is the most it grows to [64 x Cost].
	Cost, MaxCost int64
	// PassJoins and PassTTL: one solution lets a session join this many
	// times [20] within this long [10m].
	PassJoins int
	PassTTL   time.Duration
	// HalfLife is how fast an address's count of joins fades [10m]; Free
	// is the count below which it pays Cost [10]; every Step [10] above
	// doubles the price.
	HalfLife   time.Duration
	Free, Step float64
	// MaxAddrs and MaxSessions bound the memory kept per address and per
	// session [100000 each].
	MaxAddrs, MaxSessions int
	Now                   func() time.Time
	Rand                  io.Reader
}

// Gate issues challenges and decides whether a session may join.
type Gate struct {
	sig   signer
	spent Spent
	costs *costs
	now   func() time.Time
	opt   Options

	mu     sync.Mutex
	passes map[string]pass // by session
}

// pass is what a solution bought a session: joins left until a time.
type pass struct {
	left  int
	until time.Time
}

// New builds a Gate.
func New(opt Options) (*Gate, error) {
	if len(opt.Key) == 0 {
		return nil, errors.New("pow: an HMAC key is required")
	}
	if opt.Spent == nil {
		return nil, errors.New("pow: a replay memory (Spent) is required")
	}
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&opt.Expiry, 2*time.Minute)
	defDur(&opt.PassTTL, 10*time.Minute)
	defDur(&opt.HalfLife, 10*time.Minute)
	def(&opt.Cost, 200000)
	def(&opt.MaxCost, 64*opt.Cost)
	if opt.MaxCost < opt.Cost {
		return nil, fmt.Errorf("pow: the largest cost %d is below the base cost %d", opt.MaxCost, opt.Cost)
	}
	if opt.PassJoins <= 0 {
		opt.PassJoins = 20
	}
	if opt.Free <= 0 {
		opt.Free = 10
	}
	if opt.Step <= 0 {
		opt.Step = 10
	}
	if opt.MaxAddrs <= 0 {
		opt.MaxAddrs = 100000
	}
	if opt.MaxSessions <= 0 {
		opt.MaxSessions = 100000
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	return &Gate{
		sig:   signer{key: opt.Key, rand: opt.Rand, expiry: opt.Expiry},
		spent: opt.Spent,
		costs: &costs{
			base: opt.Cost, max: opt.MaxCost, free: opt.Free, step: opt.Step,
			halfLife: opt.HalfLife, maxAddrs: opt.MaxAddrs, scores: make(map[string]score),
		},
		now:    opt.Now,
		opt:    opt,
		passes: make(map[string]pass),
	}, nil
}

// Issue makes a challenge for a client at addr (its address key); the
// more that address has joined lately, the costlier the challenge.
func (g *Gate) Issue(addr string) (Challenge, error) {
	now := g.now()
	return g.sig.issue(now, g.costs.price(g.costs.add(addr, now)))
}

// Admit decides whether session (at addr) may join now. A payload is
// always checked and, when good, spent and turned into a fresh pass
// (this join included); without one the session's pass pays. The error
// is a *Refusal, or the replay memory's failure.
func (g *Gate) Admit(ctx context.Context, session, addr, payload string) error {
	now := g.now()
	if payload == "" {
		if g.usePass(session, now) {
			g.costs.add(addr, now)
			return nil
		}
		return ErrRequired
	}
	c, err := g.sig.check(payload, now)
	if err != nil {
		return err
	}
	first, err := g.spent.Spend(ctx, c.challenge, c.expires)
	if err != nil {
		return err
	}
	if !first {
		return refuse(reasonReused, "this solution was used already; solve a new challenge")
	}
	g.newPass(session, now)
	return nil
}

func (g *Gate) usePass(session string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, ok := g.passes[session]
	if !ok || !now.Before(p.until) || p.left <= 0 {
		delete(g.passes, session)
		return false
	}
	p.left--
	g.passes[session] = p
	return true
}

// newPass gives session PassJoins-1 more joins (this one is paid).
func (g *Gate) newPass(session string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.passes[session]; !ok && len(g.passes) >= g.opt.MaxSessions {
		for k, p := range g.passes {
			if !now.Before(p.until) {
				delete(g.passes, k)
			}
		}
		if len(g.passes) >= g.opt.MaxSessions {
			// Full of live passes: this session pays for each join
			// instead. Nothing is let through for free.
			return
		}
	}
	g.passes[session] = pass{left: g.opt.PassJoins - 1, until: now.Add(g.opt.PassTTL)}
}

// Expiry is how long a challenge may be used.
func (g *Gate) Expiry() time.Duration { return g.opt.Expiry }
