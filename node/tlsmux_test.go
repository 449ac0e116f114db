package node

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// bindingOver sends a STUN Binding request on c and reads the answer.
func bindingOver(c net.Conn) error {
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(req.Raw); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	var res stun.Message
	res.Raw = append(res.Raw[:0], buf[:n]...)
	if err := res.Decode(); err != nil {
		return err
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// TestTURNOnHTTPSPortLimits: with http's certificate files, TURN over
// TLS on the HTTPS port is counted by the relay, not by the HTTP caps:
// turn.tcp_connections_per_ip refuses one too many, http.idle_timeout
// does not cut a TURN connection, and the HTTP connection count goes
// back down once a connection is handed over.
func TestTURNOnHTTPSPortLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile = selfSigned(t)
	cfg.HTTP.IdleTimeout = 200 * time.Millisecond
	cfg.TURN.TCPConnectionsPerIP = 1
	tn, _ := serveNode(t, cfg, nil, nil, "/healthz")
	addr := strings.TrimPrefix(tn.url, "https://")
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a throwaway certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first := dial()
	if err := bindingOver(first); err != nil {
		t.Fatalf("STUN over TLS on the HTTPS port: %v", err)
	}
	// Longer than http.idle_timeout: the relay's deadlines apply, not HTTP's.
	time.Sleep(4 * cfg.HTTP.IdleTimeout)
	if err := bindingOver(first); err != nil {
		t.Fatalf("the TURN connection did not outlive http.idle_timeout: %v", err)
	}
	if err := bindingOver(dial()); err == nil {
		t.Fatal("a second TURN connection from one address was served past turn.tcp_connections_per_ip: 1")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a throwaway certificate
	defer client.CloseIdleConnections()
	metrics := func() string {
		t.Helper()
		resp, err := client.Get(tn.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	body := metrics()
	for _, line := range []string{
		`duet_turn_tcp_closed_total{reason="per_address_cap"} 1`,
		`duet_https_connections_total{kind="turn"} 2`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// Only this client's keep-alive is an HTTP connection (the start-up
	// probe's goes away); the open TURN connection is not.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(body, "duet_http_connections 1\n") {
		if time.Now().After(deadline) {
			t.Fatalf("HTTP connections never came down to 1 with a TURN connection open:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
		body = metrics()
	}
}
