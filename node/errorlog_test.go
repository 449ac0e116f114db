package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScrubAddrs(t *testing.T) {
	hash := func(ip string) string { return "H(" + ip + ")" }
	for _, tt := range []struct{ in, want string }{
		{"http: TLS handshake error from 198.51.100.7:51234: EOF",
			"http: TLS handshake error from ip:H(198.51.100.7): EOF"},
		{"http: TLS handshake error from [2001:db8::7]:443: tls: first record does not look like a TLS handshake",
			"http: TLS handshake error from ip:H(2001:db8::7): tls: first record does not look like a TLS handshake"},
		{"read tcp 192.0.2.1:8443->203.0.113.9:40000: read: connection reset by peer",
			"read tcp ip:H(192.0.2.1)->ip:H(203.0.113.9): read: connection reset by peer"},
		{"http: panic serving 203.0.113.9:1: boom", "http: panic serving ip:H(203.0.113.9): boom"},
		{"peer 2001:db8:1:2::1, then fe80::1%eth0 and [fe80::2%eth1]:80.",
			"peer ip:H(2001:db8:1:2::1), then ip:H(fe80::1%eth0) and ip:H(fe80::2%eth1)."},
		{"mapped [::ffff:192.0.2.1]:5 ad192.0.2.2", "mapped ip:H(::ffff:192.0.2.1) adip:H(192.0.2.2)"},
		// Not valid as a whole; the address in it is still found.
		{"odd ::ffff:192.0.2.1:5", "odd ::ffff:ip:H(192.0.2.1)"},
		{"http: Accept error: accept tcp [::]:8080: accept4: too many open files; retrying in 5ms",
			"http: Accept error: accept tcp ip:H(::): accept4: too many open files; retrying in 5ms"},
		{"nothing here: 12:30:05, deadbeef, a.b, 1.2.3, 1e3.", "nothing here: 12:30:05, deadbeef, a.b, 1.2.3, 1e3."},
	} {
		if got := scrubAddrs(tt.in, hash); got != tt.want {
			t.Errorf("scrubAddrs(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestTLSErrorLogHasNoAddresses: clients that send a TLS server garbage
// make net/http log handshake errors naming them; the node's log holds
// their hashed address, never the address.
func TestTLSErrorLogHasNoAddresses(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile = selfSigned(t)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tn, n := serveNode(t, cfg, log, nil, "/healthz")
	srvAddr := strings.TrimPrefix(tn.url, "https://")

	const clientIP = "127.0.0.77" // a source address no other line has
	for _, tt := range []struct {
		name    string
		garbage string
	}{
		{"plain HTTP to HTTPS", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"not a TLS record", strings.Repeat("\x00garbage", 64)},
		{"truncated ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"bad record version", "\x16\x09\x09\x00\x05hello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 2 * time.Second}
			c, err := d.Dial("tcp", srvAddr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, tt.garbage)
			_ = c.(*net.TCPConn).CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the server gives up
			c.Close()
		})
	}
	want := "ip:" + n.hub.HashIP(clientIP)
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(logs.String(), "TLS handshake error") < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "TLS handshake error"); n < 4 {
		t.Fatalf("%d TLS handshake errors logged, want 4:\n%s", n, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, want) {
			t.Errorf("handshake error without the client's hash %s: %s", want, line)
		}
	}
	// The node's own lines name its listening addresses; net/http's name
	// clients and must hold no address at all.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, clientIP) || strings.Contains(line, "from=net/http") && strings.Contains(line, "127.0.0.") {
			t.Errorf("a raw address in the log: %s", line)
		}
	}
}

// selfSigned writes a throwaway certificate and key for 127.0.0.1.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "duet test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
