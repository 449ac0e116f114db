package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pturn "github.com/pion/turn/v4"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
)

// acmeDomain is the name the node asks pebble for; pebble's test DNS
// answers 127.0.0.1 for it.
const acmeDomain = "duet.test"

// acmeNode is a node serving HTTPS with a certificate from pebble.
type acmeNode struct {
	n        *Node
	addr     string // the HTTPS listener, 127.0.0.1:port
	httpAddr string // http.acme.http_listen
	roots    *x509.CertPool
	stop     func()
}

// acmeConfig is the operator's config for HTTPS by itself (README), on
// loopback ports pebble validates.
func acmeConfig(t *testing.T, p *testtool.Pebble, httpsPort, httpPort int) *configs.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(httpsPort)
	cfg.HTTP.ACME = configs.ACME{
		Enabled: true, Domains: []string{acmeDomain}, Email: "ops@example.org",
		DirectoryURL: p.Directory, CacheDir: filepath.Join(t.TempDir(), "acme"), CARootFile: p.CAFile,
	}
	if httpPort != 0 {
		cfg.HTTP.ACME.HTTPListen = "127.0.0.1:" + strconv.Itoa(httpPort)
	}
	cfg.TURN.ListenTLS = "127.0.0.1:0"
	return cfg
}

// startACMENode runs cfg and waits until its HTTPS listener serves a
// certificate that chains to pebble's root.
func startACMENode(t *testing.T, p *testtool.Pebble, cfg *configs.Config) *acmeNode {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the operator's config is refused: %v", err)
	}
	log := testLogger(t)
	n, err := New(cfg, log)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	ln, err := Listen(context.Background(), cfg.HTTP)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	an := &acmeNode{n: n, addr: cfg.HTTP.Listen, httpAddr: cfg.HTTP.ACME.HTTPListen}
	stopped := false
	an.stop = func() {
		if !stopped {
			stopped = true
			stopNode(t, cancel, done)
		}
	}
	t.Cleanup(an.stop)
	an.roots = x509.NewCertPool()
	if !an.roots.AppendCertsFromPEM(p.RootPEM(t)) {
		t.Fatal("pebble's root is not PEM")
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := an.leaf()
		if err == nil {
			return an
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from pebble within 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tlsConfig trusts pebble's root only, for the node's name.
func (a *acmeNode) tlsConfig(protos ...string) *tls.Config {
	return &tls.Config{RootCAs: a.roots, ServerName: acmeDomain, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// leaf handshakes with the node and returns the verified certificate.
func (a *acmeNode) leaf() (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", a.addr, a.tlsConfig("http/1.1"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func (a *acmeNode) httpClient(protos ...string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: a.tlsConfig(protos...),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a.addr)
		},
	}}
}

// wss opens the signalling WebSocket over TLS, as a browser at
// https://duet.test would, and reads its welcome.
func (a *acmeNode) wss(t *testing.T, name string) *wssClient {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig:  a.tlsConfig(),
		HandshakeTimeout: 5 * time.Second,
		NetDial:          func(network, _ string) (net.Conn, error) { return net.Dial(network, a.addr) },
	}
	_, port, _ := net.SplitHostPort(a.addr)
	h := http.Header{"Origin": {"https://" + acmeDomain + ":" + port}}
	ws, resp, err := d.Dial("wss://"+acmeDomain+":"+port+"/ws", h)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("%s: wss dial: %v (HTTP %d)", name, err, code)
	}
	t.Cleanup(func() { ws.Close() })
	c := &wssClient{t: t, name: name, ws: ws}
	c.expect("welcome")
	return c
}

// wssClient speaks the protocol's JSON frames over the secure socket.
type wssClient struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
}

type wssMessage struct {
	Type       string `json:"type"`
	ICEServers []struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username"`
		Credential string   `json:"credential"`
	} `json:"ice_servers"`
}

func (c *wssClient) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// expect reads until a message of type typ, passing over others (the
// online count and the like).
func (c *wssClient) expect(typ string) wssMessage {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m wssMessage
		if err := c.ws.ReadJSON(&m); err != nil {
			c.t.Fatalf("%s: waiting for %s: %v", c.name, typ, err)
		}
		if m.Type == typ {
			return m
		}
		if m.Type == "error" {
			c.t.Fatalf("%s: error while waiting for %s", c.name, typ)
		}
	}
}

// allocateTLS makes a TURN allocation over TLS at addr (trusting only
// pebble's root, for the node's name), offering protos by ALPN.
func (a *acmeNode) allocateTLS(t *testing.T, addr string, s iceServer, protos ...string) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, a.tlsConfig(protos...))
	if err != nil {
		return fmt.Errorf("TLS to %s: %w", addr, err)
	}
	defer conn.Close()
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: pturn.NewSTUNConn(conn),
		Username: s.user, Password: s.credential, Realm: "duet",
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	relay, err := c.Allocate()
	if err != nil {
		return fmt.Errorf("allocating over TLS at %s: %w", addr, err)
	}
	_ = relay.Close()
	return nil
}

// TestACMEWithPebble: the node gets its certificate from a real ACME CA
// (pebble, validating TLS-ALPN-01 on the HTTPS port), serves https:// and
// wss:// with it, answers TURN over TLS on that same port (offered in
// matched.ice_servers as turns:duet.test:<port>) and on turn.listen_tls,
// and redirects plain HTTP to https://.
func TestACMEWithPebble(t *testing.T) {
	httpsPort, httpPort := testtool.FreePort(t), testtool.FreePort(t)
	p := testtool.StartPebble(t, testtool.PebbleOptions{HTTPPort: httpPort, TLSPort: httpsPort})
	cfg := acmeConfig(t, p, httpsPort, httpPort)
	a := startACMENode(t, p, cfg)
	leaf, _ := a.leaf()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeDomain {
		t.Fatalf("certificate names %v, want [%s]", leaf.DNSNames, acmeDomain)
	}
	t.Logf("certificate: serial %x, valid %s to %s, issuer %q", leaf.SerialNumber, leaf.NotBefore, leaf.NotAfter, leaf.Issuer.CommonName)

	// https://: as browsers ask (ALPN http/1.1), and as a client that
	// offers no ALPN (told from TURN by its first bytes).
	hc := a.httpClient("http/1.1")
	for _, c := range []*http.Client{hc, a.httpClient()} {
		resp, err := c.Get("https://" + acmeDomain + "/healthz")
		if err != nil {
			t.Fatalf("https:// GET: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("https:// /healthz (ALPN %q): %d", resp.TLS.NegotiatedProtocol, resp.StatusCode)
		}
	}

	// Plain HTTP on http_listen goes to https:// on the HTTPS port.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+a.httpAddr+"/admin?x=1", nil)
	req.Host = acmeDomain
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://" + acmeDomain + ":" + strconv.Itoa(httpsPort) + "/admin?x=1"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("http:// answered %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	// wss://: two strangers meet; matched offers turns: on the HTTPS port.
	x, y := a.wss(t, "x"), a.wss(t, "y")
	x.send(map[string]any{"type": "queue", "mode": "video"})
	x.expect("queued")
	y.send(map[string]any{"type": "queue", "mode": "video"})
	y.expect("queued")
	mx := x.expect("matched")
	y.expect("matched")
	onHTTPS := "turns:" + acmeDomain + ":" + strconv.Itoa(httpsPort) + "?transport=tcp"
	var turnEntry iceServer
	for _, s := range mx.ICEServers {
		for _, u := range s.URLs {
			if u == onHTTPS {
				turnEntry = iceServer{urls: s.URLs, user: s.Username, credential: s.Credential}
			}
		}
	}
	if turnEntry.user == "" {
		t.Fatalf("matched.ice_servers lacks %s: %+v", onHTTPS, mx.ICEServers)
	}

	// TURN over TLS on the HTTPS port: as browsers do (no ALPN), and
	// with RFC 7443's stun.turn.
	for _, protos := range [][]string{nil, {"stun.turn"}} {
		if err := a.allocateTLS(t, a.addr, turnEntry, protos...); err != nil {
			t.Fatalf("ALPN %v: %v", protos, err)
		}
	}
	// turn.listen_tls serves the same certificate.
	_, _, tlsPort := a.n.turn.Ports()
	if err := a.allocateTLS(t, "127.0.0.1:"+strconv.Itoa(tlsPort), turnEntry); err != nil {
		t.Fatalf("turn.listen_tls: %v", err)
	}
	body := metricsText(t, hc, "https://"+acmeDomain+"/metrics")
	for _, line := range []string{
		`duet_https_connections_total{kind="turn"} 2`,
		`duet_acme_events_total{event="obtained"} 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

func metricsText(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestACMERenewal: with certificates that live 30 seconds the node
// renews in the last third of the lifetime and serves the new one on the
// same listener, TURN's included, without a restart.
func TestACMERenewal(t *testing.T) {
	old := acmeRenewCheck
	acmeRenewCheck = time.Second
	t.Cleanup(func() { acmeRenewCheck = old })
	httpsPort := testtool.FreePort(t)
	p := testtool.StartPebble(t, testtool.PebbleOptions{TLSPort: httpsPort, HTTPPort: testtool.FreePort(t), Validity: 30 * time.Second})
	cfg := acmeConfig(t, p, httpsPort, 0) // TLS-ALPN-01 only
	a := startACMENode(t, p, cfg)
	first, _ := a.leaf()
	t.Logf("first certificate: serial %x, %s to %s", first.SerialNumber, first.NotBefore, first.NotAfter)
	_, _, tlsPort := a.n.turn.Ports()
	turnsAddr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	deadline := first.NotAfter.Add(10 * time.Second)
	for {
		leaf, err := a.leaf()
		if err == nil && leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Logf("renewed: serial %x, %s to %s", leaf.SerialNumber, leaf.NotBefore, leaf.NotAfter)
			if !leaf.NotAfter.After(first.NotAfter) {
				t.Fatalf("the new certificate ends %s, not after the old one's %s", leaf.NotAfter, first.NotAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate was not renewed before it expired (%s): %v", first.NotAfter, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// turns: on turn.listen_tls has the new certificate too.
	c, err := tls.Dial("tcp", turnsAddr, a.tlsConfig())
	if err != nil {
		t.Fatalf("turns: after renewal: %v", err)
	}
	defer c.Close()
	if c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("turn.listen_tls still serves the old certificate")
	}
}

// TestACMEBadSettings: what an operator can get wrong is refused at
// start, naming the key and what to do.
func TestACMEBadSettings(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		tweak func(*configs.Config)
		want  string
	}{
		{"no domain", func(c *configs.Config) { c.HTTP.ACME.Domains = nil },
			"http.acme.domains: http.acme.enabled needs at least one domain"},
		{"certificate files too", func(c *configs.Config) { c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = "c.pem", "k.pem" },
			"http.acme and http.tls_cert_file are both set"},
		{"cache dir is a file", func(c *configs.Config) { c.HTTP.ACME.CacheDir = filepath.Join(file, "acme") },
			"http.acme.cache_dir: mkdir " + file + ": not a directory"},
		{"port 80 taken", func(c *configs.Config) { c.HTTP.ACME.HTTPListen = taken.Addr().String() },
			"http.acme.http_listen " + taken.Addr().String() + ": listen tcp " + taken.Addr().String() + ": bind: address already in use (another web server holds the port"},
		{"HTTPS port taken", func(c *configs.Config) { c.HTTP.Listen = taken.Addr().String() },
			"listening on " + taken.Addr().String() + ": listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{"CA roots missing", func(c *configs.Config) { c.HTTP.ACME.CARootFile = filepath.Join(file, "x") },
			"http.acme.ca_root_file: open " + filepath.Join(file, "x")},
		{"CA roots not PEM", func(c *configs.Config) { c.HTTP.ACME.CARootFile = notPEM },
			"http.acme.ca_root_file " + notPEM + ": no PEM certificate in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.HTTP.Listen = "127.0.0.1:0"
			cfg.HTTP.ACME = configs.ACME{
				Enabled: true, Domains: []string{acmeDomain}, DirectoryURL: configs.LetsEncrypt,
				CacheDir: t.TempDir(), HTTPListen: "127.0.0.1:0",
			}
			tt.tweak(cfg)
			err := startErr(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("start error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// startErr does what `duet serve` does before serving: validate, build,
// bind.
func startErr(cfg *configs.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer n.Close()
	ln, err := Listen(context.Background(), cfg.HTTP)
	if err != nil {
		return err
	}
	return errors.Join(ln.Close(), errors.New("started"))
}

// TestACMESharedThroughRedis: two nodes on one Redis ask for the same
// name. One orders (holding the lock in Redis), the other waits and
// loads what it stored; the CA's check may reach either node, since
// both answer a challenge from Redis. Both serve the same certificate,
// and it was obtained once.
func TestACMESharedThroughRedis(t *testing.T) {
	addr := testtool.StartRedis(t)
	portA, portB := testtool.FreePort(t), testtool.FreePort(t)
	// pebble checks TLS-ALPN-01 on node A's port, whichever node ordered.
	p := testtool.StartPebble(t, testtool.PebbleOptions{TLSPort: portA, HTTPPort: testtool.FreePort(t)})
	var nodes []*acmeNode
	for i, port := range []int{portA, portB} {
		cfg := acmeConfig(t, p, port, 0)
		cfg.TURN.ListenTLS = ""
		cfg.Store.Backend = "redis"
		cfg.Store.Redis.Addrs = []string{addr}
		cfg.Store.Redis.KeyPrefix = "t:" + t.Name() + ":"
		cfg.Store.Redis.Node = fmt.Sprintf("n%d", i)
		cfg.HTTP.ShutdownGrace = 500 * time.Millisecond
		nodes = append(nodes, startACMENode(t, p, cfg))
	}
	a, _ := nodes[0].leaf()
	b, _ := nodes[1].leaf()
	if a.SerialNumber.Cmp(b.SerialNumber) != 0 {
		t.Fatalf("node A serves serial %x, node B %x: the certificate was not shared", a.SerialNumber, b.SerialNumber)
	}
	obtained := 0
	for _, n := range nodes {
		body := metricsText(t, n.httpClient("http/1.1"), "https://"+acmeDomain+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, `duet_acme_events_total{event="obtained"} `); ok {
				k, _ := strconv.Atoi(v)
				obtained += k
			}
		}
	}
	if obtained != 1 {
		t.Fatalf("the two nodes obtained %d certificates, want 1", obtained)
	}
}

// TestACMENeverServedFreesHTTPListen: a node built but never served (its
// HTTPS port was taken, say) gives http.acme.http_listen back on Close.
func TestACMENeverServedFreesHTTPListen(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	httpAddr := "127.0.0.1:" + strconv.Itoa(testtool.FreePort(t))
	cfg.HTTP.ACME = configs.ACME{
		Enabled: true, Domains: []string{acmeDomain}, DirectoryURL: configs.LetsEncrypt,
		CacheDir: t.TempDir(), HTTPListen: httpAddr,
	}
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("http_listen still held after Close: %v", err)
	}
	_ = ln.Close()
}

// TestACMEHTTP01: where the CA cannot reach the HTTPS port (its TLS-ALPN
// check goes to a closed port), the node gets the certificate through
// HTTP-01 on http.acme.http_listen.
func TestACMEHTTP01(t *testing.T) {
	httpsPort, httpPort := testtool.FreePort(t), testtool.FreePort(t)
	p := testtool.StartPebble(t, testtool.PebbleOptions{HTTPPort: httpPort, TLSPort: testtool.FreePort(t)})
	a := startACMENode(t, p, acmeConfig(t, p, httpsPort, httpPort))
	leaf, _ := a.leaf()
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeDomain {
		t.Fatalf("certificate names %v", leaf.DNSNames)
	}
}
