package e2e

import (
	"testing"
	"time"
)

// TestNATLabTURN, the node on the operator's config (startDuet): two pion
// clients behind symmetric NATs cannot connect with STUN alone (so the lab
// really is symmetric); with the TURN servers duet hands out in `matched`
// they connect over a relay pair, media flows, and the admin API shows the
// room on the TURN path with bytes growing both ways.
func TestNATLabTURN(t *testing.T) {
	lab := newNATLab(t)
	lab.startDuet()

	t.Run("STUN alone fails behind symmetric NAT", func(t *testing.T) {
		res := lab.peers([]string{"-stun-only", "-connect-timeout", "12s", "-hold", "1s"}, nil)
		for i, r := range res {
			if r.Room == "" {
				t.Fatalf("peer %d was never matched: %s", i+1, r.Error)
			}
			if r.Connected {
				t.Fatalf("peer %d connected with STUN only (%s/%s): the lab NAT is not symmetric", i+1, r.Local, r.Remote)
			}
		}
	})

	t.Run("TURN relays the media", func(t *testing.T) {
		var seen labRoom
		res := lab.peers([]string{"-connect-timeout", "20s", "-hold", "8s"}, func() {
			// The STUN-only pair's room may still be in its resume grace;
			// this pair's room is the one on the turn path.
			seen = lab.watchRoom("turn", 40*time.Second, nil)
		})
		for i, r := range res {
			if !r.Connected {
				t.Fatalf("peer %d did not connect through TURN: %s", i+1, r.Error)
			}
			if r.Local != "relay" && r.Remote != "relay" {
				t.Errorf("peer %d selected %s/%s, want a relay candidate", i+1, r.Local, r.Remote)
			}
			if r.Packets < 100 {
				t.Errorf("peer %d received %d RTP packets, want >= 100", i+1, r.Packets)
			}
		}
		if seen.Room == "" {
			t.Fatal("/api/rooms never showed a room on the turn path with bytes growing both ways")
		}
		if seen.Room != res[0].Room {
			t.Errorf("admin room %s, peers in %s", seen.Room, res[0].Room)
		}
	})
}
