package node

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// TestHostileHTTPSPort: the HTTPS listener sorts HTTP from TURN after its
// own TLS handshake, so everything before that is its to bound. Silent
// connections, plain text and garbage where TLS belongs, a ClientHello
// trickled and abandoned, and handshakes that never send a first byte are
// all cut within the handshake deadline; meanwhile a user on another
// address gets through, and afterwards goroutines, heap and CPU come back.
func TestHostileHTTPSPort(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile = selfSigned(t)
	tn, _ := serveNode(t, cfg, nil, nil, "/healthz")
	addr := strings.TrimPrefix(tn.url, "https://")
	tlsConf := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a throwaway certificate
	base := testtool.TakeBaseline()

	var attackers []net.Conn
	t.Cleanup(func() {
		for _, c := range attackers {
			c.Close()
		}
	})
	raw := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
		return c
	}
	attacks := []struct {
		name string
		n    int
		do   func(c net.Conn)
	}{
		{"silent", 10, func(net.Conn) {}},
		{"plain HTTP on the TLS port", 5, func(c net.Conn) { _, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }},
		{"garbage", 5, func(c net.Conn) { _, _ = c.Write([]byte(strings.Repeat("\xff\x00\x13", 400))) }},
		{"a record length that wraps", 5, func(c net.Conn) { _, _ = c.Write([]byte{0x16, 0x03, 0x01, 0xff, 0xff}) }},
		{"a ClientHello trickled, then abandoned", 5, func(c net.Conn) {
			for _, b := range []byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01} {
				_, _ = c.Write([]byte{b})
				time.Sleep(20 * time.Millisecond) // the trickle itself
			}
		}},
	}
	for _, a := range attacks {
		for range a.n {
			a.do(raw())
		}
	}
	// Handshakes that then say nothing: the mux waits for a first byte.
	for range 5 {
		c, err := tls.Dial("tcp", addr, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
	}

	// A user on another address is served while all that hangs.
	honest := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsConf,
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	defer honest.CloseIdleConnections()
	get := func(when string) {
		t.Helper()
		resp, err := honest.Get(tn.url + "/healthz")
		if err != nil {
			t.Fatalf("%s: an honest HTTPS request: %v", when, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: /healthz = %d", when, resp.StatusCode)
		}
	}
	get("during the attack")

	// Every attacker is cut, by the handshake deadline at the latest.
	deadline := time.Now().Add(readHeaderTimeout + 5*time.Second)
	buf := make([]byte, 512)
	for i, c := range attackers {
		_ = c.SetReadDeadline(deadline)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("attacker %d still open %v after the attack", i, readHeaderTimeout+5*time.Second)
				}
				break
			}
		}
		c.Close()
	}
	honest.CloseIdleConnections()
	testtool.RequireCalm(t, base, testtool.Slack{Goroutines: 8, Heap: 8 << 20, Within: 15 * time.Second})
	get("after the attack")
}
