package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

type adminRoom struct {
	Room string `json:"room"`
	Path string `json:"path"`
	AToB struct {
		Bytes float64 `json:"bytes"`
	} `json:"a_to_b"`
	BToA struct {
		Bytes float64 `json:"bytes"`
	} `json:"b_to_a"`
}

// TestNATLabTURN: two pion clients behind symmetric NATs cannot connect
// with STUN alone (so the lab really is symmetric); with the TURN servers
// duet hands out in `matched` they connect over a relay pair, media flows,
// and the admin API shows the room on the TURN path with bytes growing
// both ways.
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
		var first, last adminRoom
		res := lab.peers([]string{"-connect-timeout", "20s", "-hold", "8s"}, func() {
			deadline := time.Now().Add(40 * time.Second)
			for time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
				body, err := lab.get("/api/rooms")
				if err != nil {
					continue
				}
				var list struct {
					Rooms []adminRoom `json:"rooms"`
				}
				if json.Unmarshal(body, &list) != nil {
					continue
				}
				// The STUN-only pair's room may still be in its resume
				// grace; this pair's room is the one on the turn path.
				var r adminRoom
				for _, c := range list.Rooms {
					if c.Path == "turn" && (first.Room == "" || c.Room == first.Room) {
						r = c
					}
				}
				if r.Room == "" || r.AToB.Bytes == 0 || r.BToA.Bytes == 0 {
					continue
				}
				if first.Room == "" {
					first = r
					continue
				}
				if r.AToB.Bytes > first.AToB.Bytes && r.BToA.Bytes > first.BToA.Bytes {
					last = r
					return
				}
			}
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
		if first.Room == "" {
			t.Fatal("/api/rooms never showed the room on the turn path with bytes both ways")
		}
		if last.Room == "" {
			t.Fatalf("relayed bytes did not grow both ways (first reading %+v)", first)
		}
		if first.Room != res[0].Room {
			t.Errorf("admin room %s, peers in %s", first.Room, res[0].Room)
		}
	})
}
