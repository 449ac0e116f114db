package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestRecvStreamNacksAndReports(t *testing.T) {
	now := time.Unix(1000, 0)
	s := &recvStream{ssrc: 7, clockRate: 90000}
	for _, seq := range []uint16{65530, 65531, 65534, 65535, 0, 3} { // 65532, 65533, 1, 2 missing; wraps
		s.packet(seq, uint32(seq)*3000, now)
	}
	var pairs [8]rtcp.NackPair
	n := s.nacks(pairs[:])
	var asked []uint16
	for _, p := range pairs[:n] {
		asked = append(asked, p.PacketList()...)
	}
	want := map[uint16]bool{65532: true, 65533: true, 1: true, 2: true}
	if len(asked) != 4 {
		t.Fatalf("NACKed %v, want %v", asked, want)
	}
	for _, seq := range asked {
		if !want[seq] {
			t.Fatalf("NACKed %v, want %v", asked, want)
		}
	}
	s.packet(1, 3000, now) // a retransmission arrives
	n = s.nacks(pairs[:])
	asked = asked[:0]
	for _, p := range pairs[:n] {
		asked = append(asked, p.PacketList()...)
	}
	if len(asked) != 3 {
		t.Fatalf("after 1 arrived: NACKed %v, want the other three", asked)
	}
	for range nackTries {
		s.nacks(pairs[:])
	}
	if n := s.nacks(pairs[:]); n != 0 {
		t.Fatalf("still NACKing after %d tries", nackTries)
	}
	rr, ok := s.report(now)
	// 10 expected (65530..3), 7 received: 3 lost.
	if !ok || rr.SSRC != 7 || rr.TotalLost != 3 || rr.LastSequenceNumber != 1<<16+3 || rr.FractionLost != 3*256/10 {
		t.Fatalf("report = %+v", rr)
	}
}

func TestSendStreamRetransmits(t *testing.T) {
	var sent []uint16
	w := interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		if len(payload) != 100 || payload[0] != byte(h.SequenceNumber) {
			t.Errorf("packet %d came back with payload %v", h.SequenceNumber, payload[:1])
		}
		sent = append(sent, h.SequenceNumber)
		return len(payload), nil
	})
	f := &feedback{send: map[uint32]*sendStream{}, recv: map[uint32]*recvStream{}, now: time.Now, done: make(chan struct{})}
	wrapped := f.BindLocalStream(&interceptor.StreamInfo{SSRC: 9, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}, w)
	// A stream without generic NACK (Opus) keeps nothing.
	if audio := f.BindLocalStream(&interceptor.StreamInfo{SSRC: 10, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}, w); f.send[10].slots != nil || audio == nil {
		t.Fatal("a stream without NACK feedback keeps its packets")
	}
	for seq := uint16(10); seq < 20; seq++ {
		p := make([]byte, 100)
		p[0] = byte(seq)
		if _, err := wrapped.Write(&rtp.Header{Version: 2, SequenceNumber: seq, SSRC: 9}, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	sent = sent[:0]
	f.retransmit(&rtcp.TransportLayerNack{MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 12, LostPackets: 0b101}}})
	// 12, 13 and 15; and a NACK for a packet long gone does nothing.
	f.retransmit(&rtcp.TransportLayerNack{MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 9000}}})
	if len(sent) != 3 || sent[0] != 12 || sent[1] != 13 || sent[2] != 15 {
		t.Fatalf("retransmitted %v, want [12 13 15]", sent)
	}
}

// TestSenderReports: a stream's report counts what it sent (a
// retransmission too), and maps now to RTP time from the first packet
// of its newest frame; a stream that sent nothing reports nothing.
func TestSenderReports(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { return clock }
	f := &feedback{send: map[uint32]*sendStream{}, recv: map[uint32]*recvStream{}, now: now, done: make(chan struct{})}
	w := interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil })
	video := f.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, ClockRate: 90000, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}, w)
	f.BindLocalStream(&interceptor.StreamInfo{SSRC: 2, ClockRate: 48000}, w) // silent
	frameAt := clock
	for i, ts := range []uint32{9000, 9000, 9000, 12000} { // two frames, the first of three packets
		if ts == 12000 {
			frameAt = clock
		}
		if _, err := video.Write(&rtp.Header{SequenceNumber: uint16(100 + i), Timestamp: ts, SSRC: 1}, make([]byte, 1000), nil); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(10 * time.Millisecond)
	}
	// A late packet (a reordered one) counts but moves no timestamp.
	_, _ = video.Write(&rtp.Header{SequenceNumber: 99, Timestamp: 6000, SSRC: 1}, make([]byte, 500), nil)
	f.retransmit(&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 101}}})
	clock = frameAt.Add(time.Second)
	srs := f.senderReports(clock)
	if len(srs) != 1 {
		t.Fatalf("%d sender reports, want 1 (the silent stream sends none)", len(srs))
	}
	sr := srs[0]
	want := rtcp.SenderReport{SSRC: 1, NTPTime: ntpTime(clock), RTPTime: 12000 + 90000, PacketCount: 6, OctetCount: 4*1000 + 500 + 1000}
	if sr.SSRC != want.SSRC || sr.NTPTime != want.NTPTime || sr.RTPTime != want.RTPTime || sr.PacketCount != want.PacketCount || sr.OctetCount != want.OctetCount {
		t.Fatalf("sender report %+v, want %+v", *sr, want)
	}
	if got := ntpMiddle(clock); got != uint32(want.NTPTime>>16) {
		t.Fatalf("ntpMiddle %x, NTP time %x", got, want.NTPTime)
	}
}
