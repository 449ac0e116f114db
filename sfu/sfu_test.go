package sfu

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/duetchat/duet/internal/testtool"
)

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connectedRoom opens an SFU room with two pion peers answering it and
// waits until both legs are connected. Everything is closed at cleanup.
func connectedRoom(t testing.TB, newPeer func(testing.TB) *testtool.PionPeer) (*SFU, *Room, [2]*testtool.PionPeer) {
	t.Helper()
	s, err := New(Options{ListenIP: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	room, peers := connectedRoomOn(t, s, "room1", newPeer)
	return s, room, peers
}

// connectedRoomOn is connectedRoom on an SFU of the caller's.
func connectedRoomOn(t testing.TB, s *SFU, code string, newPeer func(testing.TB) *testtool.PionPeer) (*Room, [2]*testtool.PionPeer) {
	t.Helper()
	peers := [2]*testtool.PionPeer{newPeer(t), newPeer(t)}
	t.Cleanup(func() {
		for _, p := range peers {
			p.Close()
		}
	})

	var mu sync.Mutex
	offers := [2]string{}
	cands := [2][]webrtc.ICECandidateInit{}
	room, err := s.Open(code)
	if err != nil {
		t.Fatal(err)
	}
	err = room.Start(func(side int, sig Signal) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case sig.SDP != "":
			offers[side] = sig.SDP
		case sig.Candidate != nil:
			cands[side] = append(cands[side], *sig.Candidate)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range peers {
		mu.Lock()
		offer := offers[i]
		mu.Unlock()
		if err := room.Answer(i, p.Answer(offer)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "SFU candidates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cands[0]) > 0 && len(cands[1]) > 0
	})
	mu.Lock()
	for i, p := range peers {
		for _, c := range cands[i] {
			if err := p.PC.AddICECandidate(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Unlock()
	for _, p := range peers {
		eventually(t, "connected", func() bool { return p.PC.ConnectionState() == webrtc.PeerConnectionStateConnected })
	}
	return room, peers
}

// TestForwardBothWays: two pion peers on one SFU room receive each
// other's audio and video, a keyframe request from one reaches the other's
// sender, the figures grow both ways, and no goroutine survives Close.
func TestForwardBothWays(t *testing.T) {
	for _, tc := range []struct {
		name    string
		newPeer func(testing.TB) *testtool.PionPeer
		// whether the shortcut (shortcut.go) carries the armed streams:
		// only when the node is the DTLS server and so sees its keys
		shortcut bool
	}{
		{"client answers as DTLS client, as browsers do", browserLikePeer, true},
		{"client answers as DTLS server, as pion does against ICE-lite", testtool.NewPionPeer, false},
	} {
		t.Run(tc.name, func(t *testing.T) { forwardBothWays(t, tc.newPeer, tc.shortcut) })
	}
}

// browserLikePeer answers the node's offer with a=setup:active, as
// Chromium and Firefox do: the node is then the DTLS server.
func browserLikePeer(t testing.TB) *testtool.PionPeer {
	return testtool.NewPionPeerWith(t, func(se *webrtc.SettingEngine) {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
			t.Fatal(err)
		}
	})
}

func forwardBothWays(t *testing.T, newPeer func(testing.TB) *testtool.PionPeer, shortcut bool) {
	// Registered first, so it runs last: after the room's cleanups.
	t.Cleanup(test.CheckRoutines(t))

	s, room, peers := connectedRoom(t, newPeer)
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); p.Send(200) }()
	}
	wg.Wait()
	for i, p := range peers {
		for k, kind := range []string{"audio", "video"} {
			eventually(t, kind+" packets", func() bool { return p.Got[k].Load() >= 50 })
		}
		t.Logf("peer %d received %d audio, %d video packets", i, p.Got[0].Load(), p.Got[1].Load())
	}
	a, b := room.Figures()
	if a.Packets < 100 || b.Packets < 100 || a.Bytes == 0 || b.Bytes == 0 {
		t.Fatalf("figures a->b %+v, b->a %+v", a, b)
	}
	// Each of the four streams is forwarded on pion's SRTP loop (direct.go),
	// and every packet forwarded was noted once for NACKs and reports.
	for i, l := range room.legs {
		if n := armedStreams(l); n != 2 {
			t.Fatalf("side %d: %d streams forwarded directly, want 2", i, n)
		}
		eventually(t, "every packet noted", func() bool { return notedPackets(l) == l.packets.Load() })
	}
	// and, once armed, off the socket by the shortcut (shortcut.go)
	taken := counted(t, s.cuts.taken)
	t.Logf("the shortcut forwarded %d of %d packets", taken, a.Packets+b.Packets)
	if shortcut && taken == 0 {
		t.Fatal("the shortcut forwarded nothing")
	}
	if !shortcut && taken != 0 {
		t.Fatal("the shortcut forwarded packets it has no keys for")
	}

	// Peer 0 asks for a keyframe of the video it receives; the SFU asks
	// peer 1, its sender.
	if err := peers[0].RequestKeyframe(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the PLI upstream", func() bool { return peers[1].PLIs.Load() > 0 })
	if _, bToA := room.Figures(); bToA.PLIs == 0 {
		t.Fatal("PLI not counted")
	}

	room.Close()
	if _, ok := s.Room("room1"); ok {
		t.Fatal("closed room still listed")
	}
}

// counted reads a counter's value.
func counted(t testing.TB, c prometheus.Counter) uint64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return uint64(m.GetCounter().GetValue())
}

func armedStreams(l *leg) int {
	l.bufMu.Lock()
	defer l.bufMu.Unlock()
	n := 0
	for _, b := range l.bufs {
		if b.deliver.Load() != nil {
			n++
		}
	}
	return n
}

func notedPackets(l *leg) uint64 {
	var n uint64
	for k := range l.in {
		if rs := l.fb.Load().incoming(l.in[k].Load()); rs != nil {
			rs.mu.Lock()
			n += uint64(rs.received)
			rs.mu.Unlock()
		}
	}
	return n
}

// BenchmarkRelay is the per-packet forward step (parse, count, write to
// the other side's track through pion's interceptors and SRTP) on a live
// room. allocs/op is what the hot path costs the garbage collector.
func BenchmarkRelay(b *testing.B) {
	// Bare peers: what is counted is the node's forward path only.
	_, room, _ := connectedRoom(b, testtool.NewBarePionPeer)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234}, Payload: make([]byte, 1000)}
	pkt.Payload[0] = 0x10
	raw, err := pkt.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	src, dst := room.legs[0], room.legs[1].out[1]
	var scratch rtp.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := range b.N {
		raw[2], raw[3] = byte(i>>8), byte(i) // sequence number
		room.relay(src, dst, 1, &scratch, raw)
	}
}

func TestNTPMiddle(t *testing.T) {
	// 1970-01-01 00:00:00.5 is NTP 2208988800.5: middle bits 0x…8000.
	got := ntpMiddle(time.Unix(0, 5e8))
	want := uint32((uint64(2208988800)<<16)&0xffffffff | 0x8000)
	if got != want {
		t.Fatalf("ntpMiddle = %#x, want %#x", got, want)
	}
}

// TestCandidateBeforeAnswer: a client's candidate that overtakes its
// answer is kept and applied with the answer, not refused.
func TestCandidateBeforeAnswer(t *testing.T) {
	room := openRoom(t, "early")
	var offer string
	var mu sync.Mutex
	if err := room.Start(func(side int, sig Signal) {
		mu.Lock()
		defer mu.Unlock()
		if side == 0 && sig.SDP != "" {
			offer = sig.SDP
		}
	}); err != nil {
		t.Fatal(err)
	}
	peer := testtool.NewPionPeer(t)
	defer peer.Close()
	mu.Lock()
	answer := peer.Answer(offer)
	mu.Unlock()
	cand := webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", SDPMid: ptr("0")}
	if err := room.Candidate(0, &cand); err != nil {
		t.Fatalf("candidate before the answer: %v", err)
	}
	if err := room.Answer(0, answer); err != nil {
		t.Fatalf("answer with a held candidate: %v", err)
	}
}

// TestAnswerBeforeOfferIsSet: the offer reaches the client before it is
// the node's local description (so no candidate can overtake it); a client
// that answers inside that window has its answer wait, not refused.
func TestAnswerBeforeOfferIsSet(t *testing.T) {
	room := openRoom(t, "quick")
	peer := testtool.NewPionPeer(t)
	defer peer.Close()
	answered := make(chan error, 1)
	if err := room.Start(func(side int, sig Signal) {
		if side != 0 || sig.SDP == "" {
			return
		}
		// Still inside Start, before SetLocalDescription: answer now.
		answer := peer.Answer(sig.SDP)
		go func() { answered <- room.Answer(0, answer) }()
		select {
		case err := <-answered:
			t.Errorf("the answer returned before the offer was set: %v", err)
			answered <- err
		case <-time.After(200 * time.Millisecond): // it waits, as it should
		}
	}); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the answer still waits after the offer was set")
	}
}

// openRoom opens a room on a fresh SFU; both close at cleanup.
func openRoom(t *testing.T, code string) *Room {
	t.Helper()
	s, err := New(Options{ListenIP: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	room, err := s.Open(code)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	return room
}

func ptr[T any](v T) *T { return &v }
