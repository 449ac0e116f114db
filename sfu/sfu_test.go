package sfu

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
)

// client is a pion peer standing in for a browser: it answers the SFU's
// offer, sends synthetic audio and video, and counts what it receives.
type client struct {
	t        *testing.T
	pc       *webrtc.PeerConnection
	tracks   [2]*webrtc.TrackLocalStaticRTP // audio, video
	senders  [2]*webrtc.RTPSender
	got      [2]atomic.Int64 // packets received, by kind
	plis     atomic.Int64    // keyframe requests received for our video
	recvSSRC atomic.Uint32   // the SSRC of the video we receive
	wg       sync.WaitGroup
}

func newClient(t *testing.T) *client {
	t.Helper()
	se := webrtc.SettingEngine{LoggerFactory: quiet()}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		k := kindIndex(tr.Kind())
		if k == 1 {
			c.recvSSRC.Store(uint32(tr.SSRC()))
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				c.got[k].Add(1)
			}
		}()
	})
	return c
}

// answer takes the SFU's offer, adds our outgoing tracks to its
// transceivers (sendrecv, as a browser does) and returns the answer.
func (c *client) answer(offer string) string {
	c.t.Helper()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		c.t.Fatal(err)
	}
	caps := [2]webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	}
	// AddTrack after the offer reuses the offered transceiver of the kind
	// and makes it sendrecv, as a browser's addTrack does.
	for k, cp := range caps {
		track, err := webrtc.NewTrackLocalStaticRTP(cp, []string{"a", "v"}[k], "client")
		if err != nil {
			c.t.Fatal(err)
		}
		sender, err := c.pc.AddTrack(track)
		if err != nil {
			c.t.Fatal(err)
		}
		c.tracks[k], c.senders[k] = track, sender
		c.wg.Add(1)
		go func() { // read RTCP (reports, NACKs) and count keyframe requests
			defer c.wg.Done()
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok && k == 1 {
						c.plis.Add(1)
					}
				}
			}
		}()
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(ans); err != nil {
		c.t.Fatal(err)
	}
	<-done
	return c.pc.LocalDescription().SDP
}

// send writes n packets of each kind.
func (c *client) send(n int, seq *uint16) {
	payload := make([]byte, 200)
	for range n {
		*seq++
		for k, tr := range c.tracks {
			if tr == nil {
				continue
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: *seq, Timestamp: uint32(*seq) * 3000, PayloadType: 96}, Payload: payload}
			if k == 1 {
				payload[0] = 0x10 // VP8 start of partition
			}
			_ = tr.WriteRTP(pkt)
		}
		time.Sleep(2 * time.Millisecond) // pacing of a real sender, not a wait for a condition
	}
}

func (c *client) close() {
	_ = c.pc.Close()
	c.wg.Wait()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardBothWays: two clients on one SFU room receive each other's
// audio and video, a keyframe request from one reaches the other's
// sender, the figures grow both ways, and nothing survives Close.
func TestForwardBothWays(t *testing.T) {
	report := test.CheckRoutines(t)
	defer report()

	s, err := New(Options{ListenIP: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	clients := [2]*client{newClient(t), newClient(t)}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	var mu sync.Mutex
	offers := [2]string{}
	cands := [2][]webrtc.ICECandidateInit{}
	room, err := s.Open("room1", func(side int, sig Signal) {
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
	for i, c := range clients {
		mu.Lock()
		offer := offers[i]
		mu.Unlock()
		if err := room.Answer(i, c.answer(offer)); err != nil {
			t.Fatal(err)
		}
	}
	// Trickled SFU candidates, then the ones gathered since.
	eventually(t, "SFU candidates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cands[0]) > 0 && len(cands[1]) > 0
	})
	mu.Lock()
	for i, c := range clients {
		for _, cand := range cands[i] {
			if err := c.pc.AddICECandidate(cand); err != nil {
				t.Fatal(err)
			}
		}
	}
	mu.Unlock()
	for i, c := range clients {
		eventually(t, "connected", func() bool { return c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
		_ = i
	}

	var seqs [2]uint16
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.send(200, &seqs[i]) }()
	}
	wg.Wait()
	for i, c := range clients {
		for k, kind := range []string{"audio", "video"} {
			eventually(t, kind+" packets", func() bool { return c.got[k].Load() >= 50 })
		}
		t.Logf("client %d received %d audio, %d video packets", i, c.got[0].Load(), c.got[1].Load())
	}
	a, b := room.Figures()
	if a.Packets < 100 || b.Packets < 100 || a.Bytes == 0 || b.Bytes == 0 {
		t.Fatalf("figures a->b %+v, b->a %+v", a, b)
	}

	// Client 0 asks for a keyframe of the video it receives; the SFU asks
	// client 1, the sender, for one.
	ssrc := clients[0].recvSSRC.Load()
	if err := clients[0].pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the PLI upstream", func() bool { return clients[1].plis.Load() > 0 })
	if _, bToA := room.Figures(); bToA.PLIs == 0 {
		t.Fatal("PLI not counted")
	}

	room.Close()
	if _, ok := s.Room("room1"); ok {
		t.Fatal("closed room still listed")
	}
	if err := errors.Join(); err != nil {
		t.Fatal(err)
	}
}
