package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// feedback is the SFU's own RTCP machinery, in place of pion's NACK and
// report interceptors: receiver reports and NACKs for what the node
// receives; sender reports, and retransmissions from a ring of recent
// packets, for what it sends. It reads sequence numbers and timestamps
// straight from the packet bytes and keeps packets in preallocated
// slots, so the forward path allocates nothing per packet (pion's
// versions parse a header and copy every sent packet into fresh
// memory), and a sent packet takes one lock here, not two (pion's
// sender-report interceptor locked its own and read the clock for
// every packet).
type feedback struct {
	interceptor.NoOp
	now    func() time.Time
	ssrc   uint32 // ours, as the sender of receiver reports
	writer atomic.Pointer[interceptor.RTCPWriter]

	mu   sync.Mutex
	recv map[uint32]*recvStream
	send map[uint32]*sendStream

	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	loopOnce sync.Once
}

type feedbackFactory struct {
	now func() time.Time
	// made, when set, learns each interceptor built (the leg whose
	// direct path feeds it).
	made func(*feedback)
}

// NewInterceptor implements interceptor.Factory.
func (f feedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	fb := &feedback{
		now: f.now, ssrc: binary.BigEndian.Uint32(b[:]),
		recv: map[uint32]*recvStream{}, send: map[uint32]*sendStream{}, done: make(chan struct{}),
	}
	if f.made != nil {
		f.made(fb)
	}
	return fb, nil
}

// incoming is what the interceptor knows of remote stream ssrc, nil if
// nothing: the direct path (direct.go) notes its packets there itself,
// since they do not pass the interceptor's reader.
func (f *feedback) incoming(ssrc uint32) *recvStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recv[ssrc]
}

const (
	// ringSize is how many sent packets a stream keeps for retransmission:
	// 1.6 s of video at 1.5 Mbps, 1 s at 2.5 Mbps, past which a browser's
	// jitter buffer has given up on a lost packet anyway. Each slot is a
	// full MTU, so the ring is most of a room's memory (390 KB a stream).
	ringSize   = 256
	maxMissing = 128 // sequence gaps remembered for NACKs
	nackTries  = 3
	nackEvery  = 100 * time.Millisecond
	rrEvery    = time.Second
)

// recvStream is what we know of one incoming stream.
type recvStream struct {
	mu        sync.Mutex
	ssrc      uint32
	clockRate uint32
	started   bool
	maxSeq    uint16
	cycles    uint32
	baseSeq   uint32
	received  uint32
	// for the loss fraction since the last report
	expPrior, recvPrior uint32
	jitter              float64
	lastTransit         int64
	// the last sender report: its middle NTP bits and when it came
	lsr     uint32
	lsrTime time.Time
	// sequence numbers still missing, and how often each was asked for
	missing [maxMissing]uint16
	tries   [maxMissing]uint8
	nMiss   int
}

// sendStream is one outgoing stream: what its sender reports say, and
// for a stream the receiver may NACK its last ringSize packets.
type sendStream struct {
	mu        sync.Mutex
	writer    interceptor.RTPWriter
	ssrc      uint32
	clockRate float64
	// for sender reports (RFC 3550 6.4.1): packets and payload octets
	// sent, and the RTP timestamp of the newest frame with when it went
	packets, octets uint32
	lastSeq         uint16
	lastTS          uint32
	lastTSAt        time.Time
	slots           *[ringSize]slot // nil: not kept (no NACK)
}

type slot struct {
	seq  uint16
	n    int
	hlen int
	buf  [1500]byte
}

// BindRTCPWriter implements interceptor.Interceptor: reports and NACKs go
// out through it, from one loop per connection.
func (f *feedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	f.writer.Store(&w)
	f.loopOnce.Do(func() {
		f.wg.Add(1)
		go f.loop()
	})
	return w
}

// BindRTCPReader implements interceptor.Interceptor: it answers NACKs
// from the ring and notes sender reports for the reports' LSR/DLSR.
func (f *feedback) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		pkts, perr := rtcp.Unmarshal(b[:n])
		if perr != nil {
			return n, attr, nil
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				f.retransmit(p)
			case *rtcp.SenderReport:
				f.senderReport(p)
			}
		}
		return n, attr, nil
	})
}

// BindLocalStream implements interceptor.Interceptor. Only a stream the
// receiver may NACK keeps its packets: audio (Opus is offered without
// nack) would write its ring for every packet and never read it.
func (f *feedback) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	s := &sendStream{writer: w, ssrc: info.SSRC, clockRate: float64(info.ClockRate)}
	if nackable(info) {
		s.slots = new([ringSize]slot)
	}
	f.mu.Lock()
	f.send[info.SSRC] = s
	f.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		s.sent(h, payload, f.now, true)
		return w.Write(h, payload, a)
	})
}

// nackable reports whether the stream's codec was negotiated with
// generic NACK feedback.
func nackable(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// UnbindLocalStream implements interceptor.Interceptor.
func (f *feedback) UnbindLocalStream(info *interceptor.StreamInfo) {
	f.mu.Lock()
	delete(f.send, info.SSRC)
	f.mu.Unlock()
}

// BindRemoteStream implements interceptor.Interceptor.
func (f *feedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	s := &recvStream{ssrc: info.SSRC, clockRate: info.ClockRate}
	f.mu.Lock()
	f.recv[info.SSRC] = s
	f.mu.Unlock()
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err == nil {
			s.note(b[:n], f.now())
		}
		return n, attr, err
	})
}

// UnbindRemoteStream implements interceptor.Interceptor.
func (f *feedback) UnbindRemoteStream(info *interceptor.StreamInfo) {
	f.mu.Lock()
	delete(f.recv, info.SSRC)
	f.mu.Unlock()
}

// Close implements interceptor.Interceptor.
func (f *feedback) Close() error {
	f.once.Do(func() { close(f.done) })
	f.wg.Wait()
	return nil
}

// sent counts a packet for the sender reports and, if keep and the
// stream keeps packets, copies it into its slot (no allocation). The
// clock is read only for the first packet of a frame.
func (s *sendStream) sent(h *rtp.Header, payload []byte, now func() time.Time, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := h.SequenceNumber - s.lastSeq; s.packets == 0 || (d != 0 && d < 1<<15) {
		// In order: its timestamp is the stream's newest. Only a frame's
		// first packet sets the time, or a big frame's send time would
		// drift into the mapping.
		s.lastSeq = h.SequenceNumber
		if s.packets == 0 || h.Timestamp != s.lastTS {
			s.lastTS, s.lastTSAt = h.Timestamp, now()
		}
	}
	s.packets++
	s.octets += uint32(len(payload)) //nolint:gosec // wraps by design (RFC 3550)
	if keep && s.slots != nil {
		s.keep(h, payload)
	}
}

// keep copies a sent packet into its slot (no allocation). Under mu.
func (s *sendStream) keep(h *rtp.Header, payload []byte) {
	sl := &s.slots[h.SequenceNumber%ringSize]
	hl, err := h.MarshalTo(sl.buf[:])
	if err != nil || hl+len(payload) > len(sl.buf) {
		sl.n = 0
		return
	}
	sl.seq, sl.hlen, sl.n = h.SequenceNumber, hl, hl+copy(sl.buf[hl:], payload)
}

func (f *feedback) retransmit(nack *rtcp.TransportLayerNack) {
	f.mu.Lock()
	s := f.send[nack.MediaSSRC]
	f.mu.Unlock()
	if s == nil || s.slots == nil {
		return
	}
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			s.mu.Lock()
			sl := &s.slots[seq%ringSize]
			var h rtp.Header
			ok := sl.n > 0 && sl.seq == seq
			if ok {
				_, err := h.Unmarshal(sl.buf[:sl.n])
				ok = err == nil
			}
			var payload []byte
			if ok {
				payload = append([]byte(nil), sl.buf[sl.hlen:sl.n]...)
			}
			s.mu.Unlock()
			if ok {
				s.sent(&h, payload, f.now, false) // counted as sent, not kept again
				_, _ = s.writer.Write(&h, payload, nil)
			}
			return true
		})
	}
}

func (f *feedback) senderReport(sr *rtcp.SenderReport) {
	f.mu.Lock()
	s := f.recv[sr.SSRC]
	f.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.lsr = uint32(sr.NTPTime >> 16)
	s.lsrTime = f.now()
	s.mu.Unlock()
}

// note notes packet b, if it is long enough to be RTP.
func (s *recvStream) note(b []byte, now time.Time) {
	if len(b) >= 12 {
		s.packet(binary.BigEndian.Uint16(b[2:4]), binary.BigEndian.Uint32(b[4:8]), now)
	}
}

// packet notes one received packet (RFC 3550 A.1 and A.8).
func (s *recvStream) packet(seq uint16, ts uint32, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started, s.maxSeq, s.baseSeq = true, seq, uint32(seq)
	} else if d := seq - s.maxSeq; d != 0 && d < 1<<15 {
		// In order, maybe after a gap: the gap is missing for now.
		for m := s.maxSeq + 1; m != seq && s.nMiss < maxMissing; m++ {
			s.missing[s.nMiss], s.tries[s.nMiss] = m, 0
			s.nMiss++
		}
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = seq
	} else {
		// Late or repeated: if we were missing it, not any more.
		for i := 0; i < s.nMiss; i++ {
			if s.missing[i] == seq {
				s.nMiss--
				s.missing[i], s.tries[i] = s.missing[s.nMiss], s.tries[s.nMiss]
				break
			}
		}
	}
	s.received++
	if s.clockRate > 0 {
		arrival := now.UnixNano() * int64(s.clockRate) / 1e9
		transit := arrival - int64(ts)
		if s.lastTransit != 0 {
			d := transit - s.lastTransit
			if d < 0 {
				d = -d
			}
			s.jitter += (float64(d) - s.jitter) / 16
		}
		s.lastTransit = transit
	}
}

// nacks fills pairs with what is still missing (at most nackTries asks
// each) and returns how many it wrote.
func (s *recvStream) nacks(pairs []rtcp.NackPair) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := 0; i < s.nMiss; {
		if s.tries[i] >= nackTries {
			s.nMiss--
			s.missing[i], s.tries[i] = s.missing[s.nMiss], s.tries[s.nMiss]
			continue
		}
		s.tries[i]++
		seq := s.missing[i]
		placed := false
		for j := 0; j < n; j++ {
			if d := seq - pairs[j].PacketID; d >= 1 && d <= 16 {
				pairs[j].LostPackets |= 1 << (d - 1)
				placed = true
				break
			}
		}
		if !placed && n < len(pairs) {
			pairs[n] = rtcp.NackPair{PacketID: seq}
			n++
		}
		i++
	}
	return n
}

// report is the stream's reception report (RFC 3550 6.4.1, A.3).
func (s *recvStream) report(now time.Time) (rtcp.ReceptionReport, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return rtcp.ReceptionReport{}, false
	}
	ext := s.cycles + uint32(s.maxSeq)
	expected := ext - s.baseSeq + 1
	lost := int64(expected) - int64(s.received)
	expInterval := expected - s.expPrior
	recvInterval := s.received - s.recvPrior
	s.expPrior, s.recvPrior = expected, s.received
	var fraction uint8
	if lostInterval := int64(expInterval) - int64(recvInterval); expInterval > 0 && lostInterval > 0 {
		fraction = uint8(lostInterval << 8 / int64(expInterval))
	}
	rr := rtcp.ReceptionReport{
		SSRC: s.ssrc, FractionLost: fraction, TotalLost: uint32(max(lost, 0)) & 0xffffff,
		LastSequenceNumber: ext, Jitter: uint32(s.jitter), LastSenderReport: s.lsr,
	}
	if s.lsr != 0 {
		rr.Delay = uint32(now.Sub(s.lsrTime).Seconds() * 65536)
	}
	return rr, true
}

// loop sends NACKs every nackEvery and receiver reports every rrEvery
// until Close.
func (f *feedback) loop() {
	defer f.wg.Done()
	tick := time.NewTicker(nackEvery)
	defer tick.Stop()
	var pairs [32]rtcp.NackPair
	lastRR := f.now()
	for {
		select {
		case <-f.done:
			return
		case <-tick.C:
		}
		w := f.writer.Load()
		if w == nil {
			continue
		}
		now := f.now()
		f.mu.Lock()
		streams := make([]*recvStream, 0, len(f.recv))
		for _, s := range f.recv {
			streams = append(streams, s)
		}
		f.mu.Unlock()
		var out []rtcp.Packet
		for _, s := range streams {
			if n := s.nacks(pairs[:]); n > 0 {
				out = append(out, &rtcp.TransportLayerNack{SenderSSRC: f.ssrc, MediaSSRC: s.ssrc, Nacks: append([]rtcp.NackPair(nil), pairs[:n]...)})
			}
		}
		if now.Sub(lastRR) >= rrEvery {
			lastRR = now
			// Sender reports one per write, as pion's interceptor sent
			// them: each stream's own compound packet.
			for _, sr := range f.senderReports(now) {
				_, _ = (*w).Write([]rtcp.Packet{sr}, nil)
			}
			rr := &rtcp.ReceiverReport{SSRC: f.ssrc}
			for _, s := range streams {
				if r, ok := s.report(now); ok {
					rr.Reports = append(rr.Reports, r)
				}
			}
			if len(rr.Reports) > 0 {
				out = append(out, rr)
			}
		}
		if len(out) > 0 {
			_, _ = (*w).Write(out, nil)
		}
	}
}

// senderReports are the reports of every stream that has sent a packet
// (RFC 3550 6.4: one that has not sends none).
func (f *feedback) senderReports(now time.Time) []*rtcp.SenderReport {
	f.mu.Lock()
	streams := slices.Collect(maps.Values(f.send))
	f.mu.Unlock()
	var out []*rtcp.SenderReport
	for _, s := range streams {
		if sr, ok := s.report(now); ok {
			out = append(out, sr)
		}
	}
	return out
}

// report is the stream's sender report: now's NTP time, and the RTP
// time of the same instant, extrapolated from the newest frame's.
func (s *sendStream) report(now time.Time) (*rtcp.SenderReport, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.packets == 0 {
		return nil, false
	}
	return &rtcp.SenderReport{
		SSRC: s.ssrc, NTPTime: ntpTime(now),
		RTPTime:     s.lastTS + uint32(int64(now.Sub(s.lastTSAt).Seconds()*s.clockRate)), //nolint:gosec // RTP time wraps
		PacketCount: s.packets, OctetCount: s.octets,
	}, true
}

// ntpTime is t as a 64-bit NTP timestamp (32.32 seconds since 1900).
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800 // 1900 to 1970
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}
