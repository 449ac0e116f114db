//go:build unix

package turn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/duetchat/duet/internal/testtool"
)

// The hostile catalogue: what a stranger can send to the TURN listeners
// before (or instead of) authenticating. After each attack the process
// must be idle again, hold no more goroutines or heap than before, and
// still relay a real client's traffic without loss.

const (
	hostileAuthTimeout = time.Second
	hostilePerAddr     = 8
	hostileTotal       = 300
)

type hostile struct {
	r     *relay
	peer  string
	roots *x509.CertPool
}

func TestHostileStreams(t *testing.T) {
	cert := selfSigned(t)
	roots := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(leaf)
	r := startRelay(t, func(o *Options) {
		o.TURN.ListenTLS = "127.0.0.1:0"
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"}
		o.TURN.TCPAuthTimeout = hostileAuthTimeout
		o.TURN.TCPConnectionsPerIP = hostilePerAddr
		o.TURN.MaxTCPConnections = hostileTotal
		o.TURN.MaxAllocationsPerUser = 100 // the legitimate runs share a REST username
		o.TURN.MaxAllocationsPerIP = 0
	})
	h := &hostile{r: r, peer: strconv.Itoa(testtool.StartTURNPeer(t)), roots: roots}
	legitTCP := []string{"-t"}
	tests := []struct {
		name   string
		attack func(t *testing.T, h *hostile)
		legit  []string // uclient transport flags for the run afterwards
	}{
		{"ChannelData lengths pion wraps", attackChannelDataWrap, legitTCP},
		{"STUN lengths pion wraps", attackSTUNWrap, []string{"-t", "-S"}},
		{"truncated frames", attackTruncated, legitTCP},
		{"frames trickled a byte at a time", attackTrickle, legitTCP},
		{"garbage before and after a valid frame", attackGarbage, []string{"-t", "-S"}},
		{"never authenticating", attackUnauthenticated, legitTCP},
		{"thousands of connections", attackThousands, legitTCP},
		{"UDP floods of malformed STUN and ChannelData", attackUDPFlood, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := testtool.TakeBaseline()
			start := time.Now()
			cpu0 := testtool.CPUTime()
			tt.attack(t, h)
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			t.Logf("attack: %v, CPU %.0f%% of one core, then goroutines %d, heap %.1f MiB (before GC)",
				time.Since(start).Round(10*time.Millisecond), 100*(testtool.CPUTime()-cpu0).Seconds()/time.Since(start).Seconds(),
				runtime.NumGoroutine(), testtool.MiB(m.HeapAlloc))
			h.requireCalm(t, base)
			args := append(append([]string{}, tt.legit...), "-W", testSecret, "-e", "127.0.0.1", "-r", h.peer, "-n", "50", "-l", "170", "-z", "5")
			requireLossFree(t, h.r.uclient(t, args...))
		})
	}
}

// src is the i-th loopback source address: each counts as its own client.
func src(i int) net.IP { return net.IPv4(127, 0, byte(1+i/250), byte(1+i%250)) }

// dial connects from source address from to the TCP port, or over TLS.
func (h *hostile) dial(t *testing.T, overTLS bool, from net.IP) net.Conn {
	t.Helper()
	c, err := h.tryDial(overTLS, from)
	if err != nil {
		t.Fatalf("dialing the relay: %v", err)
	}
	return c
}

func (h *hostile) tryDial(overTLS bool, from net.IP) (net.Conn, error) {
	_, tcpPort, tlsPort := h.r.Ports()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
	if !overTLS {
		return d.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)))
	}
	return tls.DialWithDialer(d, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)),
		&tls.Config{RootCAs: h.roots, MinVersion: tls.VersionTLS12})
}

// closedWithin reads (and discards) until the relay closes c, and says
// how long that took; it fails if c is still open after within.
func closedWithin(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	buf := make([]byte, 2048)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the relay left the connection open for %v", within)
			}
			return time.Since(start)
		}
	}
}

func (h *hostile) closed(t *testing.T, reason string) float64 {
	t.Helper()
	return h.r.gauge(t, "duet_turn_tcp_closed_total", reason)
}

// requireClosedFor asserts n more connections were closed for reason.
func (h *hostile) requireClosedFor(t *testing.T, reason string, before float64, n int) {
	t.Helper()
	got := testtool.Poll(5*time.Second, func() (float64, bool) {
		v := h.closed(t, reason) - before
		return v, v >= float64(n)
	})
	if got < float64(n) {
		t.Errorf("duet_turn_tcp_closed_total{%s} grew by %v, want %d", reason, got, n)
	}
}

// sendEach opens one connection per payload (TCP and TLS), sends it, and
// asserts the relay closes every one for reason well before the short
// deadline.
func (h *hostile) sendEach(t *testing.T, payloads [][]byte, reason string) {
	t.Helper()
	before := h.closed(t, reason)
	var wg sync.WaitGroup
	for i, p := range payloads {
		for _, overTLS := range []bool{false, true} {
			c := h.dial(t, overTLS, src(2*i+btoi(overTLS)))
			wg.Go(func() {
				defer c.Close()
				if _, err := c.Write(p); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				closedWithin(t, c, 3*time.Second)
			})
		}
	}
	wg.Wait()
	h.requireClosedFor(t, reason, before, 2*len(payloads))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// attackChannelDataWrap sends the 12 bytes that spin pion: a ChannelData
// header whose padded length wraps to 0, and a little payload.
func attackChannelDataWrap(t *testing.T, h *hostile) {
	var payloads [][]byte
	for l := 0xFFF9; l <= 0xFFFF; l++ {
		payloads = append(payloads, append(header(0x4000, uint16(l)), make([]byte, 8)...))
	}
	payloads = append(payloads, append(header(0x7FFF, 0xFFFC), make([]byte, 8)...))
	h.sendEach(t, payloads, "bad_length")
}

// attackSTUNWrap sends STUN headers (with the cookie) whose length plus
// the 20-byte header wraps.
func attackSTUNWrap(t *testing.T, h *hostile) {
	var payloads [][]byte
	for l := 0xFFEC; l <= 0xFFFF; l++ {
		p := stunFrame(t, 12)
		binary.BigEndian.PutUint16(p[2:4], uint16(l))
		payloads = append(payloads, p)
	}
	h.sendEach(t, payloads, "bad_length")
}

// attackTruncated promises frames it never finishes: held open, they
// meet the short deadline; half-closed, they end.
func attackTruncated(t *testing.T, h *hostile) {
	timeouts, ended := h.closed(t, "auth_timeout"), h.closed(t, "ended")
	frames := [][]byte{stunFrame(t, 100)[:60], chanFrame(1000, true)[:10], header(0x4000, 0xFFF8), stunFrame(t, 0)[:19]}
	var wg sync.WaitGroup
	for i, f := range frames {
		for j, overTLS := range []bool{false, true} {
			c := h.dial(t, overTLS, src(4*i+2*j))
			half := h.dial(t, false, src(4*i+2*j+1))
			wg.Go(func() {
				defer c.Close()
				defer half.Close()
				_, _ = c.Write(f)
				_, _ = half.Write(f)
				_ = half.(*net.TCPConn).CloseWrite()
				closedWithin(t, half, 3*time.Second)
				if took := closedWithin(t, c, hostileAuthTimeout+3*time.Second); took < hostileAuthTimeout/2 {
					t.Errorf("a truncated frame was cut after %v, before its deadline", took)
				}
			})
		}
	}
	wg.Wait()
	h.requireClosedFor(t, "auth_timeout", timeouts, 2*len(frames))
	h.requireClosedFor(t, "ended", ended, 2*len(frames))
}

// attackTrickle sends a Binding request one byte at a time (the framer
// must put it together: the relay answers), and keeps 40 connections
// trickling an endless frame until the deadline cuts them: the read
// loops' stacks must not grow with the bytes.
func attackTrickle(t *testing.T, h *hostile) {
	c := h.dial(t, false, src(0))
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	for _, b := range req.Raw {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if res := readSTUN(t, c); res.Type != stun.BindingSuccess {
		t.Fatalf("trickled Binding request answered with %v", res.Type)
	}
	before := h.closed(t, "auth_timeout")
	var wg sync.WaitGroup
	for i := range 40 {
		frame := append(header(0x4000, 0xFFF0), make([]byte, 0xFFF0)...)
		if i%2 == 1 {
			frame = stunFrame(t, 0xFFE8)
		}
		c := h.dial(t, i%4 == 3, src(1+i))
		wg.Go(func() {
			defer c.Close()
			start := time.Now()
			for _, b := range frame {
				if _, err := c.Write([]byte{b}); err != nil {
					return // cut by the relay
				}
				if time.Since(start) > hostileAuthTimeout+3*time.Second {
					break
				}
				time.Sleep(time.Millisecond)
			}
			t.Error("a trickling connection was not cut at its deadline")
		})
	}
	wg.Wait()
	h.requireClosedFor(t, "auth_timeout", before, 40)
}

// attackGarbage sends what is neither STUN nor ChannelData, first and
// after a valid request.
func attackGarbage(t *testing.T, h *hostile) {
	h.sendEach(t, [][]byte{{0xFF, 0xFF, 0xFF, 0xFF}, []byte("\x80garbage"), append(header(0x0001, 8), "notacookie.."...)}, "bad_frame")
	before := h.closed(t, "bad_frame")
	for i, overTLS := range []bool{false, true} {
		c := h.dial(t, overTLS, src(i))
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.Write(append(append([]byte{}, req.Raw...), 0xC0, 1, 2, 3)); err != nil {
			t.Fatal(err)
		}
		if res := readSTUN(t, c); res.Type != stun.BindingSuccess {
			t.Fatalf("Binding request before garbage answered with %v", res.Type)
		}
		closedWithin(t, c, 3*time.Second)
		_ = c.Close()
	}
	h.requireClosedFor(t, "bad_frame", before, 2)
}

// attackUnauthenticated holds connections that never authenticate: one
// answering Binding requests, a TLS port left without a handshake, a
// broken handshake. All are cut at the short deadline. A connection
// that authenticated outlives it.
func attackUnauthenticated(t *testing.T, h *hostile) {
	timeouts, handshakes := h.closed(t, "auth_timeout"), h.closed(t, "tls_handshake")
	_, _, tlsPort := h.r.Ports()
	authed := h.dial(t, false, src(100))
	defer authed.Close()
	cred, err := h.r.creds.Mint("hostile-room", "hostile-session")
	if err != nil {
		t.Fatal(err)
	}
	allocateOver(t, authed, cred.Username, cred.Password)

	var wg sync.WaitGroup
	for i, overTLS := range []bool{false, true, false, true} {
		c := h.dial(t, overTLS, src(i))
		wg.Go(func() {
			defer c.Close()
			start := time.Now()
			for time.Since(start) < hostileAuthTimeout+3*time.Second {
				req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
				if _, err := c.Write(req.Raw); err != nil {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := readSTUNErr(c); err != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if took := time.Since(start); took < hostileAuthTimeout-100*time.Millisecond || took > hostileAuthTimeout+2*time.Second {
				t.Errorf("a Binding-only connection lasted %v, want about %v", took, hostileAuthTimeout)
			}
		})
	}
	silent, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	broken, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src(10)}}).Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer broken.Close()
	_, _ = broken.Write([]byte("\x16\x03\x01\x00\x05hello"))
	closedWithin(t, broken, 3*time.Second)
	closedWithin(t, silent, hostileAuthTimeout+3*time.Second)
	wg.Wait()
	h.requireClosedFor(t, "auth_timeout", timeouts, 5)
	h.requireClosedFor(t, "tls_handshake", handshakes, 1)

	// Past twice the short deadline, the authenticated one still answers.
	time.Sleep(hostileAuthTimeout)
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := authed.Write(req.Raw); err != nil {
		t.Fatalf("the authenticated connection was cut: %v", err)
	}
	if res := readSTUN(t, authed); res.Type != stun.BindingSuccess {
		t.Fatalf("the authenticated connection answered %v", res.Type)
	}
}

// attackThousands opens 2,000 connections that never authenticate, from
// one address past its cap and from many past the node's cap. Refused
// ones are reset at once; the node never holds more than its cap; the
// rest are cut at the short deadline.
func attackThousands(t *testing.T, h *hostile) {
	perAddr, total := h.closed(t, "per_address_cap"), h.closed(t, "total_cap")
	const n = 2000
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		peak    float64
		stopped = make(chan struct{})
	)
	sampled := make(chan struct{})
	go func() { // what the node's duet_turn_tcp_connections gauge reads
		defer close(sampled)
		for {
			select {
			case <-stopped:
				return
			case <-time.After(10 * time.Millisecond):
			}
			v := float64(h.r.guard.Count())
			mu.Lock()
			peak = max(peak, v)
			mu.Unlock()
		}
	}()
	jobs := make(chan int)
	var dialers sync.WaitGroup
	for range 64 {
		dialers.Go(func() {
			for i := range jobs {
				from := src(i / hostilePerAddr)
				if i < 3*hostilePerAddr {
					from = src(1000) // one address, three times its cap
				}
				c, err := h.tryDial(false, from)
				if errors.Is(err, syscall.ECONNRESET) {
					continue // refused so fast the reset beat connect's return
				}
				if err != nil {
					t.Errorf("dial %d: %v", i, err)
					continue
				}
				wg.Go(func() { // held open until the relay closes it
					closedWithin(t, c, hostileAuthTimeout+5*time.Second)
					_ = c.Close()
				})
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	dialers.Wait()
	wg.Wait()
	close(stopped)
	<-sampled
	mu.Lock()
	defer mu.Unlock()
	t.Logf("peak open TCP connections on the node: %v", peak)
	if peak > hostileTotal {
		t.Errorf("the node held %v connections, cap %d", peak, hostileTotal)
	}
	if d := h.closed(t, "per_address_cap") - perAddr; d < 1 {
		t.Errorf("no connection was refused for its address's cap")
	}
	if d := h.closed(t, "total_cap") - total; d < 1 {
		t.Errorf("no connection was refused for the node's cap")
	}
}

// attackUDPFlood sends malformed STUN and ChannelData datagrams to the
// UDP port from several sockets.
func attackUDPFlood(t *testing.T, h *hostile) {
	udp, _, _ := h.r.Ports()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp}
	var datagrams [][]byte
	for l := 0xFFEC; l <= 0xFFFF; l++ {
		p := stunFrame(t, 12)
		binary.BigEndian.PutUint16(p[2:4], uint16(l))
		datagrams = append(datagrams, p)
	}
	for l := 0xFFF0; l <= 0xFFFF; l++ {
		datagrams = append(datagrams, append(header(0x4000, uint16(l)), make([]byte, 8)...))
	}
	datagrams = append(datagrams, header(0x4000, 0), header(0x4000, 100), stunFrame(t, 8)[:19],
		[]byte{0xFF}, append(header(0x0101, 0x0008), "notacookie.."...), chanFrame(1600, true))
	var wg sync.WaitGroup
	for s := range 4 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src(s)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			for i := range 5000 {
				if _, err := c.WriteToUDP(datagrams[i%len(datagrams)], to); err != nil {
					t.Errorf("udp write: %v", err)
					return
				}
			}
			drained(t, c, to)
		})
	}
	wg.Wait()
}

// drained waits until the relay answers a Binding request sent after the
// flood from the same socket (so on the same SO_REUSEPORT socket and read
// loop): what was queued before it has been handled.
func drained(t *testing.T, c *net.UDPConn, to *net.UDPAddr) {
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := c.WriteToUDP(req.Raw, to); err != nil {
			t.Errorf("udp write: %v", err)
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // resend: the request may have been dropped with the flood
			}
			var m stun.Message
			if stun.Decode(buf[:n], &m) == nil && m.TransactionID == req.TransactionID {
				return
			}
		}
	}
	t.Error("the relay never answered a Binding request after the flood")
}
