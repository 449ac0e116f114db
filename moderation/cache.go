package moderation

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Cache answers ban checks from a local copy of the bans in force, so a
// connect or a queue costs no store round trip. The copy is reloaded
// whenever any node changes a ban (the store's watch) and every resync
// interval besides; bans this node makes or hears of go in at once.
// Until the first load it asks the store.
type Cache struct {
	*Moderator
	log *slog.Logger

	mu        sync.Mutex
	loaded    bool
	bySession map[string]Ban
	byIP      map[string]Ban
}

// NewCache caches m's bans.
func NewCache(m *Moderator, log *slog.Logger) *Cache {
	return &Cache{Moderator: m, log: log, bySession: map[string]Ban{}, byIP: map[string]Ban{}}
}

// Check returns the ban in force on a session or address hash.
func (c *Cache) Check(ctx context.Context, session, ipHash string) (Ban, bool, error) {
	c.mu.Lock()
	if !c.loaded {
		c.mu.Unlock()
		return c.Moderator.Check(ctx, session, ipHash)
	}
	defer c.mu.Unlock()
	found, ok := longest(c.now(), c.bySession[session], c.byIP[ipHash])
	return found, ok, nil
}

// Remember puts a ban this node just learnt of into the copy.
func (c *Cache) Remember(b Ban) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.Session != "" {
		c.bySession[b.Session] = b
	}
	if b.IPHash != "" {
		c.byIP[b.IPHash] = b
	}
}

// Report records r and remembers the ban it completes.
func (c *Cache) Report(ctx context.Context, r Report, reportedIP string) (*Ban, error) {
	b, err := c.Moderator.Report(ctx, r, reportedIP)
	if b != nil {
		c.Remember(*b)
	}
	return b, err
}

// Add stores and remembers an operator's ban.
func (c *Cache) Add(ctx context.Context, b Ban, d time.Duration) (Ban, error) {
	b, err := c.Moderator.Add(ctx, b, d)
	if err == nil {
		c.Remember(b)
	}
	return b, err
}

// Lift ends a ban and forgets it here at once.
func (c *Cache) Lift(ctx context.Context, id string) (bool, error) {
	ok, err := c.Moderator.Lift(ctx, id)
	if err == nil {
		c.mu.Lock()
		for k, b := range c.bySession {
			if b.ID == id {
				delete(c.bySession, k)
			}
		}
		for k, b := range c.byIP {
			if b.ID == id {
				delete(c.byIP, k)
			}
		}
		c.mu.Unlock()
	}
	return ok, err
}

// Reload replaces the copy with the store's bans in force.
func (c *Cache) Reload(ctx context.Context) error {
	bans, err := c.Moderator.List(ctx)
	if err != nil {
		return err
	}
	bySession, byIP := map[string]Ban{}, map[string]Ban{}
	for _, b := range bans {
		if b.Session != "" {
			bySession[b.Session] = b
		}
		if b.IPHash != "" {
			byIP[b.IPHash] = b
		}
	}
	c.mu.Lock()
	c.bySession, c.byIP, c.loaded = bySession, byIP, true
	c.mu.Unlock()
	return nil
}

// Run keeps the copy fresh until ctx ends: watch calls its argument
// whenever any node changes a ban (and after each reconnect); every
// resync the copy is reloaded anyway.
func (c *Cache) Run(ctx context.Context, watch func(ctx context.Context, changed func()) error, resync time.Duration) error {
	reload := func() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := c.Reload(rctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reloading bans", "err", err)
		}
	}
	reload()
	go func() {
		if err := watch(ctx, reload); err != nil && ctx.Err() == nil {
			c.log.Warn("watching bans stopped", "err", err)
		}
	}()
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			reload()
		}
	}
}
