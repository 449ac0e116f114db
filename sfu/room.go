package sfu

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Signal is what the room has to tell one stranger's client: its offer,
// then its candidates (Candidate nil with End set: no more).
type Signal struct {
	SDP       string // an offer when set
	Candidate *webrtc.ICECandidateInit
	End       bool
}

// Signaller delivers a room's signals to side 0 or 1. It is called from
// pion's goroutines and from Open; it must not block for long.
type Signaller func(side int, s Signal)

// pliInterval bounds how often a keyframe request goes upstream per track.
const pliInterval = 500 * time.Millisecond

// Room forwards one room's media: side 0's tracks go out to side 1 and
// the other way round.
type Room struct {
	sfu    *SFU
	code   string
	legs   [2]*leg
	wg     sync.WaitGroup
	once   sync.Once
	opened time.Time

	rateMu  sync.Mutex
	samples []sample // for bitrates: one per second at most, the last rateWindow
}

type sample struct {
	at   time.Time
	a, b uint64 // bytes each way
}

// rateWindow is what "bitrate over the last seconds" covers.
const rateWindow = 5 * time.Second

// leg is one stranger's PeerConnection.
type leg struct {
	pc *webrtc.PeerConnection
	// offered is closed once the node's offer is this leg's local
	// description (or failed to become it). The offer reaches the client
	// before that (see offer), and a quick client's answer must wait.
	offered chan struct{}
	out     [2]*webrtc.TrackLocalStaticRTP // what this client receives, by kind
	// in is the SSRC of this client's own track per kind (0 until it
	// arrives), where keyframe requests for it are addressed.
	in [2]atomic.Uint32
	// lastPLI per kind of this client's tracks, unix ns.
	lastPLI [2]atomic.Int64
	// candidates that came before the answer, applied with it
	candMu  sync.Mutex
	pending []webrtc.ICECandidateInit
	// admitted counts the remote candidates handed to pion (or pending),
	// up to maxCandidatesPerLeg.
	admitted int
	// from this client: forwarded media and the feedback it sent.
	bytes, packets, nacks, plis atomic.Uint64
	// what this client's receiver reports say of the media we send it:
	// loss fraction x 1e6 and round-trip time in microseconds.
	lossPPM, rttMicros atomic.Uint64
	// the buffers pion decrypts this client's streams into, by SSRC, and
	// the feedback interceptor of its PeerConnection (direct.go)
	bufMu sync.Mutex
	bufs  map[uint32]*relayBuffer
	fb    atomic.Pointer[feedback]
	// the DTLS secrets its SRTP keys come from, its transport, and the
	// shortcut that forwards its armed streams off the socket (shortcut.go)
	keys    keyWatch
	dtls    *webrtc.DTLSTransport
	cutMu   sync.Mutex
	cut     *shortcut
	cutDone bool // unused for good: the leg ended or has no keys for it
}

func kindIndex(k webrtc.RTPCodecType) int {
	if k == webrtc.RTPCodecTypeVideo {
		return 1
	}
	return 0
}

// Open prepares room code on the SFU: a PeerConnection per side with its
// transceivers and outgoing tracks. Start makes the offers.
func (s *SFU) Open(code string) (*Room, error) {
	r := &Room{sfu: s, code: code, opened: s.now()}
	s.m.rooms.Inc()
	for i := range r.legs {
		l, err := r.newLeg(i)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.legs[i] = l
	}
	// Listed only once whole, so Close never meets a half-built room.
	s.mu.Lock()
	_, dup := s.open[code]
	if !dup && !s.closed {
		s.open[code] = r
	}
	s.mu.Unlock()
	if dup || s.isClosed() {
		r.Close()
		return nil, fmt.Errorf("sfu: room %s is already open, or the SFU is closing", code)
	}
	return r, nil
}

func (s *SFU) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Start hands both sides their offer, then their candidates as they are
// gathered, through signal (from pion's goroutines too).
func (r *Room) Start(signal Signaller) error {
	for i, l := range r.legs {
		l.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				signal(i, Signal{End: true})
				return
			}
			if !r.sfu.advertises(c) {
				// The settings gather one address and rewrite it; this
				// holds the promise should pion ever gather another.
				r.sfu.log.Warn("SFU candidate off the one advertised address: not sent", "room", r.code, "protocol", c.Protocol.String(), "tcptype", c.TCPType)
				return
			}
			init := c.ToJSON()
			signal(i, Signal{Candidate: &init})
		})
	}
	for i, l := range r.legs {
		if err := r.offer(i, l, signal); err != nil {
			for _, rest := range r.legs[i+1:] {
				close(rest.offered) // no offer is coming: answers need not wait
			}
			return err
		}
	}
	return nil
}

func (r *Room) newLeg(i int) (*leg, error) {
	l := &leg{offered: make(chan struct{}), bufs: map[uint32]*relayBuffer{}}
	pc, err := r.sfu.apis.build(l).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("sfu: peer connection: %w", err)
	}
	l.pc = pc
	caps := [2]webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	}
	for k, c := range caps {
		track, err := webrtc.NewTrackLocalStaticRTP(c, []string{"audio", "video"}[k], "duet")
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("sfu: track: %w", err)
		}
		tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("sfu: transceiver: %w", err)
		}
		l.out[k] = track
		l.dtls = tr.Sender().Transport()
		r.wg.Add(1)
		go r.feedback(i, k, tr.Sender())
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		r.wg.Add(1)
		go r.forward(i, t)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		r.sfu.log.Debug("sfu leg state", "room", r.code, "side", i, "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			r.shortcutLeg(i, l)
		case webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateFailed:
			r.unshortcutLeg(l)
		}
	})
	l.dtls.ICETransport().OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair) {
		if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
			r.shortcutLeg(i, l)
		}
	})
	return l, nil
}

func (r *Room) offer(i int, l *leg, signal Signaller) error {
	defer close(l.offered)
	offer, err := l.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("sfu: offer: %w", err)
	}
	// The offer goes out before gathering starts, so no candidate can
	// reach the client ahead of the offer it belongs to.
	signal(i, Signal{SDP: offer.SDP})
	if err := l.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("sfu: local description: %w", err)
	}
	return nil
}

// answerWait bounds how long an answer waits for the node's own offer to
// be set (milliseconds in practice; an answer with no offer at all gives up).
const answerWait = 5 * time.Second

// Answer applies side's answer to the node's offer. The client may answer
// before the offer it saw is the node's local description (it goes out
// first, ahead of the candidates): then the answer waits for it.
func (r *Room) Answer(side int, sdp string) error {
	if side < 0 || side > 1 || r.legs[side] == nil {
		return errors.New("sfu: no such side")
	}
	l := r.legs[side]
	select {
	case <-l.offered:
	case <-time.After(answerWait):
		return errors.New("sfu: answer before the node made its offer")
	}
	l.candMu.Lock()
	defer l.candMu.Unlock()
	if f := r.sfu.filter; f != nil {
		var err error
		if sdp, err = f.filterSDP(sdp, l.admit, r.sfu.m.dropped); err != nil {
			return err
		}
	}
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("sfu: answer: %w", err)
	}
	for _, c := range l.pending {
		if err := l.pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("sfu: candidate: %w", err)
		}
	}
	l.pending = nil
	return nil
}

// admit counts one more remote candidate for pion, if the cap allows.
// The caller holds candMu.
func (l *leg) admit() bool {
	if l.admitted >= maxCandidatesPerLeg {
		return false
	}
	l.admitted++
	return true
}

// Candidate adds one of side's candidates (nil: end of candidates). A
// candidate the filter refuses is dropped silently: browsers name private
// addresses as a matter of course.
func (r *Room) Candidate(side int, c *webrtc.ICECandidateInit) error {
	if side < 0 || side > 1 || r.legs[side] == nil {
		return errors.New("sfu: no such side")
	}
	if c == nil || strings.TrimPrefix(c.Candidate, "candidate:") == "" {
		return nil // pion needs no end-of-candidates marker
	}
	l := r.legs[side]
	l.candMu.Lock()
	defer l.candMu.Unlock()
	if f := r.sfu.filter; f != nil {
		if reason := f.checkCandidate(c.Candidate); reason != "" {
			r.sfu.m.dropped(reason)
			return nil
		}
		if !l.admit() {
			r.sfu.m.dropped(dropCap)
			return nil
		}
	}
	if l.pc.RemoteDescription() == nil {
		// Trickled ahead of its answer: keep it for Answer (bounded).
		if len(l.pending) < 64 {
			l.pending = append(l.pending, *c)
		}
		return nil
	}
	if err := l.pc.AddICECandidate(*c); err != nil {
		return fmt.Errorf("sfu: candidate: %w", err)
	}
	return nil
}

// forward copies side's incoming track to the other side's outgoing
// track of the same kind, until the track ends. It forwards what pion
// has queued for the track, then arms the track's buffer so pion's SRTP
// loop forwards the rest itself (direct.go), and waits for the end. One
// buffer and one packet per goroutine are reused for the life of the
// track: no allocation per packet here.
func (r *Room) forward(side int, t *webrtc.TrackRemote) {
	defer r.wg.Done()
	k := kindIndex(t.Kind())
	src := r.legs[side]
	ssrc := uint32(t.SSRC())
	src.in[k].Store(ssrc)
	dst := r.legs[1-side].out[k]
	var direct func([]byte)
	rb, rs, fb := src.directPath(ssrc)
	if rb != nil {
		var pkt rtp.Packet
		direct = func(b []byte) {
			rs.note(b, fb.now())
			r.relay(src, dst, k, &pkt, b)
		}
	}
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		r.relay(src, dst, k, &pkt, buf[:n])
		if direct != nil && rb.arm(direct) {
			direct = nil
		}
	}
}

// relay forwards one packet: the hot path, allocation-free on our side.
func (r *Room) relay(src *leg, dst *webrtc.TrackLocalStaticRTP, k int, pkt *rtp.Packet, b []byte) {
	if pkt.Unmarshal(b) != nil {
		return
	}
	src.bytes.Add(uint64(len(b)))
	src.packets.Add(1)
	r.sfu.m.forwarded(k, len(b))
	// A write fails only while the other side is not connected yet; the
	// packet is then simply not delivered, as on a lossy path.
	_ = dst.WriteRTP(pkt)
}

// feedback reads the RTCP side's client sends about what it receives on
// transceiver kind k (so NACKs and reports run), counts it, and passes
// keyframe requests and bitrate estimates upstream to the other side.
func (r *Room) feedback(side, k int, sender *webrtc.RTPSender) {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					r.legs[side].nacks.Add(uint64(len(pair.PacketList())))
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				r.legs[side].plis.Add(1)
				r.keyframe(1-side, k)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				r.remb(1-side, k, p.Bitrate)
			case *rtcp.ReceiverReport:
				r.receiverReport(side, p.Reports)
			case *rtcp.SenderReport:
				r.receiverReport(side, p.Reports)
			}
		}
	}
}

// receiverReport keeps what side's client says about the media it gets
// from the node: the loss fraction, and the round-trip time from the
// report's echo of our last sender report (RFC 3550 6.4.1).
func (r *Room) receiverReport(side int, reports []rtcp.ReceptionReport) {
	l := r.legs[side]
	for _, rr := range reports {
		l.lossPPM.Store(uint64(rr.FractionLost) * 1e6 / 256)
		if rr.LastSenderReport == 0 {
			continue
		}
		now := ntpMiddle(r.sfu.now())
		if rtt := now - rr.LastSenderReport - rr.Delay; rtt < 1<<31 {
			l.rttMicros.Store(uint64(rtt) * 1e6 >> 16)
		}
	}
}

// ntpMiddle is the middle 32 bits of t's NTP timestamp (16.16 seconds).
func ntpMiddle(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// keyframe asks side's client for a keyframe of its track of kind k, at
// most once per pliInterval.
func (r *Room) keyframe(side, k int) {
	l := r.legs[side]
	ssrc := l.in[k].Load()
	if ssrc == 0 {
		return
	}
	now := r.sfu.now().UnixNano()
	last := l.lastPLI[k].Load()
	if now-last < int64(pliInterval) || !l.lastPLI[k].CompareAndSwap(last, now) {
		return
	}
	if err := l.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err == nil {
		r.sfu.m.plis.Inc()
	}
}

// remb passes a receiver's bitrate estimate to the sender of that track.
func (r *Room) remb(side, k int, bitrate float32) {
	l := r.legs[side]
	ssrc := l.in[k].Load()
	if ssrc == 0 {
		return
	}
	_ = l.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: bitrate, SSRCs: []uint32{ssrc}}})
}

// Close ends both PeerConnections and waits for every goroutine of the
// room. Safe to call more than once.
func (r *Room) Close() {
	r.once.Do(func() {
		for _, l := range r.legs {
			if l != nil {
				r.unshortcutLeg(l)
				_ = l.pc.Close()
			}
		}
		r.wg.Wait()
		r.sfu.mu.Lock()
		if r.sfu.open[r.code] == r {
			delete(r.sfu.open, r.code)
		}
		r.sfu.mu.Unlock()
		r.sfu.m.rooms.Dec()
		a, b := r.Figures()
		r.sfu.log.Info("sfu room ended", "room", r.code, "duration_ms", r.sfu.now().Sub(r.opened).Milliseconds(),
			"a_to_b_bytes", a.Bytes, "a_to_b_packets", a.Packets, "b_to_a_bytes", b.Bytes, "b_to_a_packets", b.Packets,
			"nacks", a.NACKs+b.NACKs, "plis", a.PLIs+b.PLIs)
	})
}

// Flow is one direction of a room: what one side sent that the node
// forwarded, its rate, and the feedback the receiving side returned about
// the node-to-receiver half (loss, RTT).
type Flow struct {
	Bytes, Packets, NACKs, PLIs uint64
	BitrateBPS                  float64
	Loss                        float64 // fraction
	RTTMS                       float64
}

// Figures returns side 0 to side 1, and side 1 to side 0. Bitrates are
// deltas over the samples of the last rateWindow (taken as Figures is
// asked, at most one a second).
func (r *Room) Figures() (aToB, bToA Flow) {
	get := func(from, to *leg) Flow {
		if from == nil || to == nil {
			return Flow{}
		}
		return Flow{Bytes: from.bytes.Load(), Packets: from.packets.Load(), NACKs: to.nacks.Load(), PLIs: to.plis.Load(),
			Loss: float64(to.lossPPM.Load()) / 1e6, RTTMS: float64(to.rttMicros.Load()) / 1e3}
	}
	aToB, bToA = get(r.legs[0], r.legs[1]), get(r.legs[1], r.legs[0])
	now := r.sfu.now()
	r.rateMu.Lock()
	defer r.rateMu.Unlock()
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= time.Second {
		r.samples = append(r.samples, sample{at: now, a: aToB.Bytes, b: bToA.Bytes})
	}
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) >= rateWindow {
		r.samples = r.samples[1:]
	}
	if first := r.samples[0]; now.Sub(first.at) > 0 {
		secs := now.Sub(first.at).Seconds()
		aToB.BitrateBPS = float64(aToB.Bytes-first.a) * 8 / secs
		bToA.BitrateBPS = float64(bToA.Bytes-first.b) * 8 / secs
	}
	return aToB, bToA
}
