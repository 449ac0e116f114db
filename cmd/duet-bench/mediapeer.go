package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/deadline"
)

// litePeer is one stranger of the media mode, as cheap as a WebRTC peer
// can be while the node still sees a real one: ICE (the controlling
// side's binding requests, as a browser sends to the ICE-lite SFU),
// a DTLS handshake and SRTP-encrypted RTP. It never decrypts or parses
// what it receives: a packet is counted by the payload type in its
// clear header. A pion PeerConnection per stranger did the same work as
// the node again for every packet (interceptors, four goroutine hand-offs
// each way, decryption), so the generator ran out of CPU before the node
// did.
type litePeer struct {
	ufrag, pwd             string
	remoteUfrag, remotePwd string
	pt                     [2]byte // payload types, audio and video (the offer's)
	ssrc                   [2]uint32

	started atomic.Bool   // a UDP candidate was taken
	ready   chan struct{} // closed when SRTP is keyed (or failed: see err)
	mu      sync.Mutex
	err     error

	conn   *net.UDPConn
	raddr  *net.UDPAddr
	dtls   *dtls.Conn
	dtlsIn chan []byte   // DTLS records for the handshake
	iceOK  chan struct{} // closed on the first binding success
	tid    [stun.TransactionIDSize]byte
	tidMu  sync.Mutex
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	// read's end, once handOver has passed the socket on
	handed   atomic.Bool
	readDone chan struct{}

	// Sending: used only by the stream goroutine that owns this peer.
	srtp  *srtp.Context
	plain [2][]byte
	out   []byte
	hdr   rtp.Header
	tries [2]int64

	Got, Sent [2]atomic.Int64 // audio, video
}

// benchCert is the one DTLS certificate every stranger presents: the node
// checks it against the answer's fingerprint, nothing more.
var benchCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "duet-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})

func fingerprint(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func randToken(n int) string {
	const abc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = abc[mrand.IntN(len(abc))]
	}
	return string(b)
}

func newLitePeer() *litePeer {
	return &litePeer{
		ufrag: randToken(8), pwd: randToken(24),
		ssrc:  [2]uint32{mrand.Uint32() | 1, mrand.Uint32() | 1},
		ready: make(chan struct{}), dtlsIn: make(chan []byte, 16), iceOK: make(chan struct{}),
		closed: make(chan struct{}), readDone: make(chan struct{}), out: make([]byte, 0, 1600),
	}
}

// answer reads the node's offer (ICE credentials, each section's mid and
// payload type) and answers it: sendrecv audio and video, our SSRCs
// declared, DTLS client.
func (p *litePeer) answer(offer string) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return "", err
	}
	cert, err := benchCert()
	if err != nil {
		return "", err
	}
	p.remoteUfrag, _ = d.Attribute("ice-ufrag")
	p.remotePwd, _ = d.Attribute("ice-pwd")
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- %d 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", mrand.Uint32())
	var mids []string
	var media strings.Builder
	for _, m := range d.MediaDescriptions {
		k, codec := 0, "opus/48000"
		if m.MediaName.Media == "video" {
			k, codec = 1, "vp8/90000"
		} else if m.MediaName.Media != "audio" {
			continue
		}
		mid, _ := m.Attribute("mid")
		if u, ok := m.Attribute("ice-ufrag"); ok {
			p.remoteUfrag = u
		}
		if pw, ok := m.Attribute("ice-pwd"); ok {
			p.remotePwd = pw
		}
		var pt, rtpmap string
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			if f := strings.Fields(a.Value); len(f) == 2 && strings.HasPrefix(strings.ToLower(f[1]), codec) {
				pt, rtpmap = f[0], f[1]
				break
			}
		}
		if pt == "" {
			return "", fmt.Errorf("offer has no %s", codec)
		}
		var n int
		_, _ = fmt.Sscan(pt, &n)
		p.pt[k] = byte(n)
		mids = append(mids, mid)
		fmt.Fprintf(&media, "m=%s 9 UDP/TLS/RTP/SAVPF %s\r\nc=IN IP4 0.0.0.0\r\na=mid:%s\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\n",
			m.MediaName.Media, pt, mid, p.ufrag, p.pwd)
		fmt.Fprintf(&media, "a=fingerprint:sha-256 %s\r\na=setup:active\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:%s %s\r\n",
			fingerprint(cert), pt, rtpmap)
		if k == 1 {
			// A browser's video feedback: with nack negotiated the node
			// keeps what it sends for retransmission, as it must for a
			// browser.
			for _, fb := range []string{"goog-remb", "ccm fir", "nack", "nack pli"} {
				fmt.Fprintf(&media, "a=rtcp-fb:%s %s\r\n", pt, fb)
			}
		}
		fmt.Fprintf(&media, "a=ssrc:%d cname:bench\r\na=ssrc:%d msid:bench %s\r\n", p.ssrc[k], p.ssrc[k], m.MediaName.Media)
	}
	if p.remoteUfrag == "" || p.remotePwd == "" || len(mids) == 0 {
		return "", errors.New("offer lacks ICE credentials or media")
	}
	fmt.Fprintf(&b, "a=group:BUNDLE %s\r\n%s", strings.Join(mids, " "), media.String())
	return b.String(), nil
}

// candidate takes the node's first UDP candidate and connects to it in
// the background; the rest are ignored.
func (p *litePeer) candidate(raw string) {
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil || !c.NetworkType().IsUDP() || p.started.Swap(true) {
		return
	}
	p.raddr = &net.UDPAddr{IP: net.ParseIP(c.Address()), Port: c.Port()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.connect(); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
		}
		close(p.ready)
	}()
}

// failure is why the peer did not connect (nil once it has).
func (p *litePeer) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *litePeer) connect() error {
	conn, err := net.DialUDP("udp4", nil, p.raddr)
	if err != nil {
		return err
	}
	_ = conn.SetReadBuffer(1 << 20)
	p.conn = conn
	p.wg.Add(1)
	go p.read()
	// ICE: the controlling side's nomination, retried until answered.
	until := time.Now().Add(10 * time.Second)
	for done := false; !done; {
		if time.Now().After(until) {
			return errors.New("no ICE binding response")
		}
		if err := p.bind(true); err != nil {
			return err
		}
		select {
		case <-p.iceOK:
			done = true
		case <-p.closed:
			return net.ErrClosed
		case <-time.After(100 * time.Millisecond):
		}
	}
	cert, err := benchCert()
	if err != nil {
		return err
	}
	dc, err := dtls.ClientWithOptions(&dtlsPipe{p: p, rd: deadline.New()}, p.raddr,
		dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithFlightInterval(200*time.Millisecond), dtls.WithLoggerFactory(quietLogs()))
	if err != nil {
		return err
	}
	p.dtls = dc
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("DTLS: %w", err)
	}
	profile, ok := dc.SelectedSRTPProtectionProfile()
	state, ok2 := dc.ConnectionState()
	if !ok || !ok2 {
		return errors.New("DTLS: no SRTP profile")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		return err
	}
	if p.srtp, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile); err != nil {
		return err
	}
	p.wg.Add(1)
	go p.keepalive()
	return nil
}

// bind sends a binding request: the nomination first, then consent
// checks that keep the node's ICE agent from timing the pair out before
// media flows.
func (p *litePeer) bind(nominate bool) error {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(p.remoteUfrag + ":" + p.ufrag), ice.AttrControlling(mrand.Uint64()), ice.PriorityAttr(1 << 24)}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(p.remotePwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return err
	}
	p.tidMu.Lock()
	p.tid = m.TransactionID
	p.tidMu.Unlock()
	_, err = p.conn.Write(m.Raw)
	return err
}

func (p *litePeer) keepalive() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.closed:
			return
		case <-t.C:
			_ = p.bind(false)
		}
	}
}

// read counts media by payload type and hands DTLS records and binding
// responses to the handshake; one buffer for the peer's life. It stops
// when the socket closes, or when handOver passes the socket to the
// epoll receivers (receive).
func (p *litePeer) read() {
	defer p.wg.Done()
	defer close(p.readDone)
	buf := make([]byte, 1600)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			select {
			case <-p.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) || p.handed.Load() {
				return
			}
			continue // ICMP unreachable before the node listens, say
		}
		p.handle(buf[:n])
	}
}

// handOver stops read, for a receiver that reads the socket itself.
func (p *litePeer) handOver() {
	p.handed.Store(true)
	_ = p.conn.SetReadDeadline(time.Unix(1, 0))
	<-p.readDone
}

// handle sorts one datagram from the node (RFC 7983): RTP is counted,
// DTLS goes to the handshake, a binding success for our request ends
// the ICE wait; RTCP and anything else is dropped unread.
func (p *litePeer) handle(b []byte) {
	n := len(b)
	switch {
	case n >= 12 && b[0]>>6 == 2: // RTP or RTCP
		pt := b[1] & 0x7f
		if pt == p.pt[1] {
			p.Got[1].Add(1)
		} else if pt == p.pt[0] {
			p.Got[0].Add(1)
		}
	case n > 0 && b[0] >= 20 && b[0] <= 63: // DTLS
		select {
		case p.dtlsIn <- append([]byte(nil), b...):
		default:
		}
	case n >= 20 && b[0] < 2: // STUN
		if binary.BigEndian.Uint16(b[0:2]) == 0x0101 { // binding success
			p.tidMu.Lock()
			mine := string(b[8:20]) == string(p.tid[:])
			p.tidMu.Unlock()
			if mine {
				select {
				case <-p.iceOK:
				default:
					close(p.iceOK)
				}
			}
		}
	}
}

// prepare builds the two plaintext packets the stream goroutine rewrites
// per send: a 12-byte header and a payload of size bytes.
func (p *litePeer) prepare(sizes [2]int) {
	for k, size := range sizes {
		b := make([]byte, 12+size)
		b[0], b[1] = 0x80, p.pt[k]
		binary.BigEndian.PutUint32(b[8:], p.ssrc[k])
		if size > 0 {
			b[12] = 0x10 // VP8: start of a partition
		}
		p.plain[k] = b
	}
}

// send encrypts and writes the next packet of kind k (no allocation).
func (p *litePeer) send(k int, tsStep uint32) {
	b := p.plain[k]
	seq := binary.BigEndian.Uint16(b[2:]) + 1
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], binary.BigEndian.Uint32(b[4:])+tsStep)
	out, err := p.srtp.EncryptRTP(p.out[:0], b, &p.hdr)
	if err != nil {
		return
	}
	if _, err := p.conn.Write(out); err == nil {
		p.Sent[k].Add(1)
	}
}

func (p *litePeer) close() {
	p.once.Do(func() {
		close(p.closed)
		if p.dtls != nil {
			_ = p.dtls.Close()
		}
		if p.conn != nil {
			_ = p.conn.Close()
		}
	})
	p.wg.Wait()
}

// quietLogs silences pion's DTLS logging.
func quietLogs() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// dtlsPipe is the packet conn the DTLS client runs over: records the
// reader sorted out, writes straight to the socket.
type dtlsPipe struct {
	p  *litePeer
	rd *deadline.Deadline
}

func (d *dtlsPipe) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case rec := <-d.p.dtlsIn:
		return copy(b, rec), d.p.raddr, nil
	case <-d.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-d.p.closed:
		return 0, nil, net.ErrClosed
	}
}

func (d *dtlsPipe) WriteTo(b []byte, _ net.Addr) (int, error) { return d.p.conn.Write(b) }
func (d *dtlsPipe) Close() error                              { return nil } // litePeer.close closes the socket
func (d *dtlsPipe) LocalAddr() net.Addr                       { return d.p.conn.LocalAddr() }
func (d *dtlsPipe) SetDeadline(t time.Time) error             { d.rd.Set(t); return nil }
func (d *dtlsPipe) SetReadDeadline(t time.Time) error         { d.rd.Set(t); return nil }
func (d *dtlsPipe) SetWriteDeadline(time.Time) error          { return nil }

// streamTick is how often the stream goroutines look for packets due.
// Each peer's packets are due at its own phase of the rate, so the node
// sees the peers' packets spread over time as from paced browsers, and a
// tick sends about one packet per peer, not a burst.
const streamTick = time.Millisecond

// stream sends every ready peer's audio and video (pps packets a second
// of size bytes, by kind) until ctx ends, from one goroutine per CPU
// rather than a goroutine and a timer per peer and kind.
func stream(ctx context.Context, peers []*litePeer, pps, size [2]int) {
	live := connected(peers)
	for _, p := range live {
		p.prepare(size)
	}
	steps := [2]uint32{48000 / uint32(max(pps[0], 1)), 90000 / uint32(max(pps[1], 1))}
	shards := min(runtime.GOMAXPROCS(0), max(len(live), 1))
	var wg sync.WaitGroup
	start := time.Now()
	for s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(streamTick)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				el := time.Since(start).Seconds()
				for i := s; i < len(live); i += shards {
					p := live[i]
					phase := float64(i) / float64(len(live))
					for k := range 2 {
						due := int64(el*float64(pps[k]) + phase)
						for ; p.tries[k] < due; p.tries[k]++ {
							p.send(k, steps[k])
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

// connected are the peers whose SRTP is keyed.
func connected(peers []*litePeer) []*litePeer {
	var out []*litePeer
	for _, p := range peers {
		if p.srtp != nil {
			out = append(out, p)
		}
	}
	return out
}

// ownCPUSeconds is this process's user+system CPU time.
func ownCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
