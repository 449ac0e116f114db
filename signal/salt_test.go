package signal

import (
	"context"
	"testing"

	"github.com/duetchat/duet/matcher"
)

// TestSharedSaltHashesAlike: hubs given one salt hash an address alike;
// without one each hub has its own.
func TestSharedSaltHashesAlike(t *testing.T) {
	salt := []byte("0123456789abcdef0123456789abcdef")
	hub := func(s []byte) *Hub {
		h, err := NewHub(Options{Queue: nopQueue{}, Salt: s})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if a, b := hub(salt).hashIP("192.0.2.1"), hub(salt).hashIP("192.0.2.1"); a != b {
		t.Fatalf("one salt, two hashes: %s %s", a, b)
	}
	if a, b := hub(nil).hashIP("192.0.2.1"), hub(nil).hashIP("192.0.2.1"); a == b {
		t.Fatal("two random salts hashed alike")
	}
}

type nopQueue struct{}

func (nopQueue) Join(context.Context, matcher.Ticket) error  { return nil }
func (nopQueue) Leave(context.Context, string) (bool, error) { return false, nil }
