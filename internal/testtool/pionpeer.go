package testtool

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PionPeer stands in for a browser facing duet's SFU: it answers the
// node's offer with an audio and a video track of its own, sends
// synthetic packets, and counts what it receives and the keyframe
// requests for its video.
type PionPeer struct {
	t        testing.TB
	PC       *webrtc.PeerConnection
	tracks   [2]*webrtc.TrackLocalStaticRTP // audio, video
	Got      [2]atomic.Int64                // packets received: audio, video
	Sent     [2]atomic.Int64                // packets sent by Stream: audio, video
	PLIs     atomic.Int64                   // keyframe requests for our video
	RecvSSRC atomic.Uint32                  // SSRC of the video we receive
	wg       sync.WaitGroup
	seq      uint16
}

// Quiet is a pion logger factory that logs nothing.
func Quiet() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

func kind(k webrtc.RTPCodecType) int {
	if k == webrtc.RTPCodecTypeVideo {
		return 1
	}
	return 0
}

// NewPionPeer builds a peer on loopback UDP with the default codecs and
// pion's default interceptors (NACK, reports), as a browser would run.
func NewPionPeer(t testing.TB) *PionPeer {
	t.Helper()
	return newPionPeer(t, nil, nil)
}

// NewPionPeerWith is NewPionPeer with its SettingEngine adjusted by
// configure after the defaults (network types, interfaces, mDNS).
func NewPionPeerWith(t testing.TB, configure func(*webrtc.SettingEngine)) *PionPeer {
	t.Helper()
	return newPionPeer(t, nil, configure)
}

// NewBarePionPeer is a peer without interceptors: a benchmark that counts
// the node's allocations in one process must not count the peer's.
func NewBarePionPeer(t testing.TB) *PionPeer {
	t.Helper()
	return newPionPeer(t, &interceptor.Registry{}, nil)
}

func newPionPeer(t testing.TB, reg *interceptor.Registry, configure func(*webrtc.SettingEngine)) *PionPeer {
	t.Helper()
	se := webrtc.SettingEngine{LoggerFactory: Quiet()}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	if configure != nil {
		configure(&se)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	opts := []func(*webrtc.API){webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)}
	if reg != nil {
		opts = append(opts, webrtc.WithInterceptorRegistry(reg))
	}
	pc, err := webrtc.NewAPI(opts...).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &PionPeer{t: t, PC: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		k := kind(tr.Kind())
		if k == 1 {
			p.RecvSSRC.Store(uint32(tr.SSRC()))
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				p.Got[k].Add(1)
			}
		}()
	})
	return p
}

// Answer takes the node's offer, sends our tracks on its transceivers
// (AddTrack after the offer makes them sendrecv, as a browser's addTrack
// does) and returns the answer with every candidate in it.
func (p *PionPeer) Answer(offer string) string {
	p.t.Helper()
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		p.t.Fatal(err)
	}
	caps := [2]webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	}
	for k, c := range caps {
		track, err := webrtc.NewTrackLocalStaticRTP(c, []string{"a", "v"}[k], "peer")
		if err != nil {
			p.t.Fatal(err)
		}
		sender, err := p.PC.AddTrack(track)
		if err != nil {
			p.t.Fatal(err)
		}
		p.tracks[k] = track
		p.wg.Add(1)
		go func() { // RTCP must be read for reports and NACKs to run
			defer p.wg.Done()
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, pk := range pkts {
					if _, ok := pk.(*rtcp.PictureLossIndication); ok && k == 1 {
						p.PLIs.Add(1)
					}
				}
			}
		}()
	}
	ans, err := p.PC.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(p.PC)
	if err := p.PC.SetLocalDescription(ans); err != nil {
		p.t.Fatal(err)
	}
	<-done
	return p.PC.LocalDescription().SDP
}

// Send writes n packets of each kind, paced like a real sender.
func (p *PionPeer) Send(n int) {
	payload := make([]byte, 200)
	for range n {
		p.seq++
		for k, tr := range p.tracks {
			if tr == nil {
				continue
			}
			if k == 1 {
				payload[0] = 0x10 // VP8: start of a partition
			}
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 3000}, Payload: payload})
		}
		time.Sleep(2 * time.Millisecond) // pacing, not a wait for a condition
	}
}

// Stream sends paced synthetic media until ctx ends: videoPPS packets a
// second of videoSize bytes and audioPPS of audioSize. It counts what it
// sent in Sent.
func (p *PionPeer) Stream(ctx context.Context, videoPPS, videoSize, audioPPS, audioSize int) {
	var wg sync.WaitGroup
	for k, rate := range [2]int{audioPPS, videoPPS} {
		size := [2]int{audioSize, videoSize}[k]
		if rate <= 0 || p.tracks[k] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			payload[0] = 0x10
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			var seq uint16
			pkt := rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload}
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				seq++
				pkt.SequenceNumber, pkt.Timestamp = seq, uint32(seq)*3000
				if p.tracks[k].WriteRTP(&pkt) == nil {
					p.Sent[k].Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

// RequestKeyframe sends a PLI for the video we receive.
func (p *PionPeer) RequestKeyframe() error {
	return p.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: p.RecvSSRC.Load()}})
}

// Close ends the peer and waits for its goroutines.
func (p *PionPeer) Close() {
	_ = p.PC.Close()
	p.wg.Wait()
}
