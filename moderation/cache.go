package moderation

import (
	"context"
	"log/slog"
	"slices"
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

	mu     sync.Mutex
	loaded bool
	bans   banIndex
}

// banIndex files every ban in force under its session and its address
// hash. One key can carry several bans (an operator's and one from
// reports, say), and a check must see the one that ends last, as the
// stores' FindBan does.
type banIndex struct {
	bySession, byIP map[string][]Ban
}

func newBanIndex() banIndex {
	return banIndex{bySession: map[string][]Ban{}, byIP: map[string][]Ban{}}
}

// put files b, replacing an earlier copy of the same ban.
func (x banIndex) put(b Ban) {
	file := func(m map[string][]Ban, key string) {
		if key != "" {
			m[key] = append(slices.DeleteFunc(m[key], sameID(b.ID)), b)
		}
	}
	file(x.bySession, b.Session)
	file(x.byIP, b.IPHash)
}

// drop forgets the ban with id wherever it is filed.
func (x banIndex) drop(id string) {
	for _, m := range []map[string][]Ban{x.bySession, x.byIP} {
		for key, list := range m {
			if list = slices.DeleteFunc(list, sameID(id)); len(list) == 0 {
				delete(m, key)
			} else {
				m[key] = list
			}
		}
	}
}

func sameID(id string) func(Ban) bool { return func(b Ban) bool { return b.ID == id } }

// find is the ban in force at now on session or ipHash that ends last.
func (x banIndex) find(now time.Time, session, ipHash string) (Ban, bool) {
	return longest(now, append(slices.Clone(x.bySession[session]), x.byIP[ipHash]...)...)
}

// NewCache caches m's bans.
func NewCache(m *Moderator, log *slog.Logger) *Cache {
	return &Cache{Moderator: m, log: log, bans: newBanIndex()}
}

// Check returns the ban in force on a session or address hash.
func (c *Cache) Check(ctx context.Context, session, ipHash string) (Ban, bool, error) {
	c.mu.Lock()
	if !c.loaded {
		c.mu.Unlock()
		return c.Moderator.Check(ctx, session, ipHash)
	}
	defer c.mu.Unlock()
	found, ok := c.bans.find(c.now(), session, ipHash)
	return found, ok, nil
}

// Remember puts a ban this node just learnt of into the copy.
func (c *Cache) Remember(b Ban) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bans.put(b)
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
		c.bans.drop(id)
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
	index := newBanIndex()
	for _, b := range bans {
		index.put(b)
	}
	c.mu.Lock()
	c.bans, c.loaded = index, true
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
