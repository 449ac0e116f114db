package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// inbox reads c's socket from here on (no read deadlines: a timed-out
// gorilla read spoils the socket) until it closes.
func inbox(c *client) <-chan msg {
	ch := make(chan msg, 256)
	go func() {
		defer close(ch)
		for {
			m, err := c.wc.Next(context.Background())
			if err != nil {
				return
			}
			ch <- m.Fields()
		}
	}()
	return ch
}

func next(t *testing.T, name string, ch <-chan msg) msg {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: socket closed", name)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no message within 10s", name)
	}
	return nil
}

// sfuSide drives one stranger's SFU leg from the protocol messages: it
// answers the node's offer (leg sfu) and adds the node's candidates, and
// keeps adding candidates until stop.
func sfuSide(t *testing.T, c *client, ch <-chan msg, room string, peer *testtool.PionPeer) {
	t.Helper()
	if m := next(t, c.name, ch); m.str("type") != "media" || m.str("mode") != "sfu" || m.str("room") != room {
		t.Fatalf("%s: got %v, want media sfu", c.name, m)
	}
	for {
		m := next(t, c.name, ch)
		if m.str("leg") != "sfu" {
			t.Fatalf("%s: got %v, want an SFU offer or candidate", c.name, m)
		}
		switch m.str("type") {
		case "offer":
			c.send(wire.Request{Type: wire.TypeAnswer, Room: room, SDP: peer.Answer(m.str("sdp")), Leg: "sfu"})
			return
		case "candidate":
			addCandidate(t, peer, m)
		}
	}
}

func addCandidate(t *testing.T, peer *testtool.PionPeer, m msg) {
	t.Helper()
	raw, _ := json.Marshal(m["candidate"])
	if string(raw) == "null" {
		return
	}
	var init webrtc.ICECandidateInit
	if err := json.Unmarshal(raw, &init); err != nil {
		t.Fatalf("candidate %s: %v", raw, err)
	}
	if err := peer.PC.AddICECandidate(init); err != nil {
		t.Fatalf("adding %s: %v", raw, err)
	}
}

// TestSFUFallback: two strangers pair, one asks for fallback, both get
// `media` `sfu` and the node's offer, answer it with pion peers, and media
// flows through the node both ways: packets counted at each peer, a
// keyframe request crosses, /api/rooms shows the room on the sfu path with
// bytes growing both ways, and leaving ends the SFU room.
func TestSFUFallback(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "admin-secret"
	n := startNode(t, cfg)
	a, b := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	if a.welcome["features"].(map[string]any)["sfu"] != true {
		t.Fatalf("welcome features = %v, want sfu", a.welcome["features"])
	}
	off, ans, room := pair(t, a, b, "video")
	peers, inboxes := fallbackAndStream(t, off, ans, room)
	if err := peers[off].RequestKeyframe(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the keyframe request at the other sender", func() bool { return peers[ans].PLIs.Load() > 0 })

	view := adminRoom(t, n.url, room, cfg.Admin.Token)
	if view.Path != "sfu" || view.AToB.Bytes == 0 || view.BToA.Bytes == 0 || view.AToB.Packets < 100 || view.BToA.Packets < 100 {
		t.Fatalf("admin room = %+v, want the sfu path with bytes both ways", view)
	}
	// Node totals: the room counts on the sfu path, packets by kind.
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`duet_rooms_by_path{path="sfu"} 1`, `duet_sfu_rooms 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexp.MustCompile(`duet_sfu_forwarded_packets_total\{kind="video"\} [1-9]`).Match(body) {
		t.Error("/metrics: no forwarded video packets")
	}

	// A second fallback for the same room is ignored (no error comes back).
	off.send(wire.Request{Type: wire.TypeFallback, Room: room})
	off.send(map[string]any{"type": "barrier"})
	for {
		m := next(t, off.name, inboxes[off])
		if m.str("type") == "candidate" { // a late SFU candidate
			continue
		}
		if m.str("type") != "error" || m.str("code") != "unknown_type" {
			t.Fatalf("after a second fallback: %v", m)
		}
		break
	}
	// The chat keeps working on the SFU.
	off.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("still here")})
	for {
		m := next(t, ans.name, inboxes[ans])
		if m.str("type") == "chat" {
			if m.str("text") != "still here" {
				t.Fatalf("chat = %v", m)
			}
			break
		}
	}

	off.send(wire.Request{Type: wire.TypeLeave})
	waitFor(t, "the SFU room to end", func() bool {
		code, _ := adminGet(t, n.url+"/api/rooms/"+room, cfg.Admin.Token)
		return code == http.StatusNotFound
	})
}

func adminRoom(t *testing.T, base, room, token string) RoomView {
	t.Helper()
	resp := authGet(t, base+"/api/rooms/"+room, token)
	defer resp.Body.Close()
	var v RoomView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// fallbackAndStream is the SFU path both ways: both strangers send ready,
// the answerer asks for the fallback, each answers the node's offer with a
// pion peer, takes the node's candidates until its leg connects, and both
// stream until each has received audio and video through the SFU. The
// peers close at cleanup; the inboxes keep reading the sockets.
func fallbackAndStream(t *testing.T, off, ans *client, room string) (map[*client]*testtool.PionPeer, map[*client]<-chan msg) {
	t.Helper()
	for _, c := range []*client{off, ans} {
		c.send(wire.Request{Type: wire.TypeReady, Room: room})
	}
	peers := map[*client]*testtool.PionPeer{off: testtool.NewPionPeer(t), ans: testtool.NewPionPeer(t)}
	t.Cleanup(func() {
		for _, p := range peers {
			p.Close()
		}
	})
	inboxes := map[*client]<-chan msg{off: inbox(off), ans: inbox(ans)}
	ans.send(wire.Request{Type: wire.TypeFallback, Room: room, Reason: "ice failed"})
	for c, p := range peers {
		sfuSide(t, c, inboxes[c], room, p)
	}
	// The node's trickled candidates, until both legs connect.
	for _, c := range []*client{off, ans} {
		p := peers[c]
		deadline := time.Now().Add(15 * time.Second)
		for p.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
			if time.Now().After(deadline) {
				t.Fatalf("%s: SFU leg not connected within 15s", c.name)
			}
			select {
			case m := <-inboxes[c]:
				if m.str("type") == "candidate" && m.str("leg") == "sfu" {
					addCandidate(t, p, m)
				}
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	var sends sync.WaitGroup
	for _, p := range peers {
		sends.Add(1)
		go func() { defer sends.Done(); p.Send(150) }()
	}
	sends.Wait()
	for _, p := range peers {
		waitFor(t, "audio and video through the SFU", func() bool { return p.Got[0].Load() >= 50 && p.Got[1].Load() >= 50 })
	}
	return peers, inboxes
}
