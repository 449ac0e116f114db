package node

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

func newTestRedisStorage(t *testing.T) (*redisStorage, *redisStorage) {
	t.Helper()
	addr := testtool.StartRedis(t)
	a := redis.NewClient(&redis.Options{Addr: addr})
	b := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return newRedisStorage(a, "t:"), newRedisStorage(b, "t:")
}

// TestRedisStorageKeys: certmagic's storage contract on a real Redis,
// seen from a second node: missing keys are fs.ErrNotExist, a key is a
// directory of the keys under it.
func TestRedisStorageKeys(t *testing.T) {
	s, other := newTestRedisStorage(t)
	ctx := context.Background()
	if _, err := s.Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	for _, k := range []string{"certs/ca/a.test/a.test.crt", "certs/ca/a.test/a.test.key", "certs/ca/b.test/b.test.crt", "acme/account.json"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := other.Load(ctx, "certs/ca/a.test/a.test.key"); err != nil || string(v) != "v:certs/ca/a.test/a.test.key" {
		t.Fatalf("the other node loads %q, %v", v, err)
	}
	tests := []struct {
		path      string
		recursive bool
		want      []string
	}{
		{"certs/ca", false, []string{"certs/ca/a.test", "certs/ca/b.test"}},
		{"certs/ca", true, []string{"certs/ca/a.test/a.test.crt", "certs/ca/a.test/a.test.key", "certs/ca/b.test/b.test.crt"}},
		{"certs/ca/a.test", false, []string{"certs/ca/a.test/a.test.crt", "certs/ca/a.test/a.test.key"}},
	}
	for _, tt := range tests {
		got, err := other.List(ctx, tt.path, tt.recursive)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%s, %v) = %v, %v; want %v", tt.path, tt.recursive, got, err, tt.want)
		}
	}
	if _, err := other.List(ctx, "certs/none", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List of nothing: %v, want fs.ErrNotExist", err)
	}
	if ki, err := other.Stat(ctx, "certs/ca/b.test/b.test.crt"); err != nil || !ki.IsTerminal || ki.Size != int64(len("v:certs/ca/b.test/b.test.crt")) || time.Since(ki.Modified) > time.Minute {
		t.Errorf("Stat of a key: %+v, %v", ki, err)
	}
	if ki, err := other.Stat(ctx, "certs/ca"); err != nil || ki.IsTerminal {
		t.Errorf("Stat of a directory: %+v, %v", ki, err)
	}
	if !other.Exists(ctx, "certs/ca/a.test") || other.Exists(ctx, "certs/ca/c.test") {
		t.Error("Exists is wrong about a directory")
	}
	if err := other.Delete(ctx, "certs/ca/a.test"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certs/ca/a.test/a.test.crt") || !s.Exists(ctx, "certs/ca/b.test/b.test.crt") {
		t.Error("Delete of a directory took the wrong keys")
	}
}

// TestRedisStorageLocks: one node at a time holds a lock; the other waits
// until it is released, and a lock whose holder died (stopped pushing it)
// frees itself after lockTTL.
func TestRedisStorageLocks(t *testing.T) {
	s, other := newTestRedisStorage(t)
	ctx := context.Background()
	if err := s.Lock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	other.poll = 20 * time.Millisecond
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := other.Lock(short, "issue_cert_a.test"); err == nil {
		t.Fatal("a second node got a held lock")
	}
	got := make(chan error, 1)
	go func() { got <- other.Lock(ctx, "issue_cert_a.test") }()
	if err := s.Unlock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting node did not get the lock once it was released")
	}
	if err := s.Unlock(ctx, "issue_cert_a.test"); err == nil {
		t.Error("unlocking a lock this node does not hold succeeded")
	}

	// A holder that dies: its lock lapses after lockTTL.
	dying := newRedisStorage(s.rdb, "t:")
	dying.lockTTL = 300 * time.Millisecond
	if err := dying.Lock(ctx, "renew_b.test"); err != nil {
		t.Fatal(err)
	}
	dying.mu.Lock()
	close(dying.held["renew_b.test"].stop) // stops pushing, as a crash would
	dying.mu.Unlock()
	start := time.Now()
	if err := other.Lock(ctx, "renew_b.test"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the dead holder's lock took %s to lapse", waited)
	}
}
