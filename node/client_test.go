package node

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

// testNode runs a real node on a loopback port and stops it at cleanup.
type testNode struct {
	url  string // http://127.0.0.1:port
	ws   string // ws://127.0.0.1:port/ws
	stop func()
}

func testConfig(t testing.TB) *configs.Config {
	t.Helper()
	cfg, err := configs.Default()
	if err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg.Signal.ResumeGrace = 5 * time.Second
	cfg.HTTP.ShutdownGrace = 2 * time.Second
	// The relay runs as it does by default, on loopback only.
	cfg.PublicIP = "127.0.0.1"
	cfg.TURN.ListenUDP, cfg.TURN.ListenTCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.TURN.Secret = "node-test-secret"
	// The SFU too, on free loopback ports.
	cfg.SFU.ListenIP, cfg.SFU.UDPPort, cfg.SFU.TCPPort = "127.0.0.1", 0, 0
	return cfg
}

// testLogger discards a test node's log, or hands it to the test's own
// at debug level under -v.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func startNode(t testing.TB, cfg *configs.Config) *testNode {
	t.Helper()
	log := testLogger(t)
	n, err := New(cfg, log)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	addr := ln.Addr().String()
	tn := &testNode{url: "http://" + addr, ws: "ws://" + addr + "/ws"}
	var once sync.Once
	tn.stop = func() { once.Do(func() { stopNode(t, cancel, done) }) }
	t.Cleanup(tn.stop)
	waitReady(t, tn.url)
	return tn
}

func stopNode(t testing.TB, cancel func(), done chan error) {
	{
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("node did not stop within 10s")
		}
	}
}

// testWriter logs through t until the test ends; timers of the node
// (resume graces) may still fire after that, and t.Log would panic.
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

func waitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("node not ready within 5s")
}

// msg is one decoded server message, as a generic JSON object: the
// protocol tests assert on its shape (which keys, of which JSON type).
type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }

// client is a protocol-level test client on a real WebSocket: wire.Client,
// failing the test on errors.
type client struct {
	t       *testing.T
	name    string
	wc      *wire.Client
	ws      *websocket.Conn // the same socket, for tests that work below the protocol
	welcome msg
}

func dial(t *testing.T, url, name string, hdr http.Header) *client {
	t.Helper()
	c := dialRaw(t, url, name, hdr)
	c.welcome = c.expect(wire.TypeWelcome)
	return c
}

// dialRaw connects without reading the first frame.
func dialRaw(t *testing.T, url, name string, hdr http.Header) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, hdr)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("%s: dial %s: %v (HTTP %d)", name, url, err, code)
	}
	c := &client{t: t, name: name, wc: wire.NewClient(ws), ws: ws}
	t.Cleanup(func() { _ = c.wc.Close() })
	return c
}

// in returns the same client reporting to t (for use inside subtests).
func (c *client) in(t *testing.T) *client {
	cc := *c
	cc.t = t
	return &cc
}

// send sends v (a wire.Request, or a map for fields of the wrong type).
func (c *client) send(v any) {
	c.t.Helper()
	if err := c.wc.Send(v); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

func (c *client) sendRaw(kind int, b []byte) {
	c.t.Helper()
	send := c.wc.SendRaw
	if kind == websocket.BinaryMessage {
		send = c.wc.SendBinary
	}
	if err := send(b); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

// read returns the next message, failing after timeout.
func (c *client) read(timeout time.Duration) msg {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := c.wc.Next(ctx)
	if err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	return m.Fields()
}

// expect reads the next message and fails unless it has type typ.
func (c *client) expect(typ string) msg {
	c.t.Helper()
	m := c.read(5 * time.Second)
	if m.str("type") != typ {
		c.t.Fatalf("%s: got %v, want type %q", c.name, m, typ)
	}
	return m
}

// expectError reads the next message and fails unless it is an error with
// code (and, when ref is set, that ref).
func (c *client) expectError(code, ref string) msg {
	c.t.Helper()
	m := c.expect(wire.TypeError)
	if m.str("code") != code {
		c.t.Fatalf("%s: error code %q (%v), want %q", c.name, m.str("code"), m, code)
	}
	if ref != "" && m.str("ref") != ref {
		c.t.Fatalf("%s: error ref %q, want %q", c.name, m.str("ref"), ref)
	}
	if m.str("message") == "" {
		c.t.Fatalf("%s: error %q has no message", c.name, code)
	}
	return m
}

// closeCode reads until the socket ends and returns the close code.
func (c *client) closeCode(timeout time.Duration) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	code, err := c.wc.CloseCode(ctx)
	if err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	return code
}

// drop cuts the TCP connection without a close frame (a Wi-Fi blip).
func (c *client) drop() { _ = c.wc.Close() }

// pair queues a and b and returns their matched messages, offerer first.
func pair(t *testing.T, a, b *client, mode string) (offerer, answerer *client, room string) {
	t.Helper()
	a.send(wire.Request{Type: wire.TypeQueue, Mode: mode})
	a.expect(wire.TypeQueued)
	b.send(wire.Request{Type: wire.TypeQueue, Mode: mode})
	b.expect(wire.TypeQueued)
	ma, mb := a.expect(wire.TypeMatched), b.expect(wire.TypeMatched)
	if ma.str("room") != mb.str("room") || ma.str("room") == "" {
		t.Fatalf("rooms differ: %v vs %v", ma, mb)
	}
	switch {
	case ma.str("role") == wire.RoleOfferer && mb.str("role") == wire.RoleAnswerer:
		return a, b, ma.str("room")
	case mb.str("role") == wire.RoleOfferer && ma.str("role") == wire.RoleAnswerer:
		return b, a, ma.str("room")
	}
	t.Fatalf("roles: %q and %q", ma.str("role"), mb.str("role"))
	return nil, nil, ""
}

func getJSON(t *testing.T, url string) (int, msg) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return doJSON(t, req)
}

// doJSON sends req and returns the status and the JSON body, if any.
func doJSON(t *testing.T, req *http.Request) (int, msg) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m msg
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// noSFU turns the SFU off (the contract's answer to fallback is then
// unavailable).
func noSFU(cfg *configs.Config) *configs.Config {
	cfg.Roles.SFU = false
	return cfg
}

// ptr is &v, for a wire.Request's optional fields.
func ptr[T any](v T) *T { return &v }
