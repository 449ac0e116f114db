package turn

import (
	"fmt"
	"testing"
	"time"
)

// rawAllocate asks for an allocation over a plain UDP socket with the
// given lifetime and then never speaks again: no refresh, no delete, the
// way a client that crashed or walked away behaves.
func rawAllocate(t *testing.T, r *relay, user, pass string, lifetime time.Duration) error {
	t.Helper()
	c := newSTUNClient(t, r, user, pass)
	if !c.allocateFor(lifetime) {
		return fmt.Errorf("allocate refused: %d", c.lastErrCode)
	}
	return nil
}

// TestAllocationOfSilentClientLapses: a client that allocates and then
// never refreshes holds its allocation only for its lifetime; then the
// relay frees it, its session's quota comes back, and nothing is left.
func TestAllocationOfSilentClientLapses(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.MaxAllocationsPerUser = 1 })
	cred, err := r.creds.Mint("room", "silent")
	if err != nil {
		t.Fatal(err)
	}
	if err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := r.gauge(t, "duet_turn_allocations", "udp"); got != 1 {
		t.Fatalf("%v live allocations after allocating, want 1", got)
	}
	// The quota is held while the allocation lives...
	if err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err == nil {
		t.Fatal("a second allocation for the session within its quota of 1")
	}
	// ...and free once it lapses.
	deadline := time.Now().Add(15 * time.Second)
	for r.gauge(t, "duet_turn_allocations", "udp") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the silent client's allocation outlived its lifetime")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err != nil {
		t.Fatalf("the session's quota did not come back: %v", err)
	}
}
