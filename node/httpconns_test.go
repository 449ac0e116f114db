package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

func TestConnCaps(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		maxConns, perIP, conn int // http.max_connections, http.max_connections_per_ip, limits.connections_per_ip
		fileLimit             int
		wantMax, wantPerIP    int
		lowered               bool
	}{
		{"automatic from a small file limit", 0, 0, 20, 256, 192, 36, false},
		{"automatic from a large one", 0, 0, 20, 20000, 20000 - 256, 36, false},
		{"configured below the file limit", 100, 50, 20, 20000, 100, 50, false},
		{"configured above it is lowered", 50000, 0, 100, 20000, 20000 - 256, 116, true},
		{"no file limit known", 0, 0, 20, 0, math.MaxInt, 36, false},
		{"no file limit, configured", 7, 0, 1, 0, 7, 17, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &configs.Config{}
			c.HTTP.MaxConnections, c.HTTP.MaxConnectionsPerIP, c.Limits.ConnectionsPerIP = tt.maxConns, tt.perIP, tt.conn
			gotMax, gotPerIP, lowered := connCaps(c, tt.fileLimit)
			if gotMax != tt.wantMax || gotPerIP != tt.wantPerIP || lowered != tt.lowered {
				t.Fatalf("connCaps = %d, %d, %v; want %d, %d, %v", gotMax, gotPerIP, lowered, tt.wantMax, tt.wantPerIP, tt.lowered)
			}
		})
	}
}

// keepAlive opens a connection from src (""= any), sends one request and
// reads its answer, leaving the connection idle between requests.
func keepAlive(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	c := rawConn(t, addr, src)
	if code := request(c, "/healthz"); code != 200 {
		t.Fatalf("keep-alive request: %d", code)
	}
	return c
}

func rawConn(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// request sends GET path on c and returns the status (0: no answer).
func request(c net.Conn, path string) int {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: duet\r\n\r\n", path); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestConnCapEvictsIdleOnly: at http.max_connections a new connection
// closes the one idle longest; WebSockets and connections in the middle
// of a request are never closed for room; with none idle the new one is
// closed at once.
func TestConnCapEvictsIdleOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.MaxConnections = 4
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, lim := n.httpServer(ln)
	go func() { _ = srv.Serve(lim) }()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = n.hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); srv.Close(); n.Close() })
	addr := ln.Addr().String()
	state := func() (open, idle int) {
		lim.mu.Lock()
		defer lim.mu.Unlock()
		return lim.open, lim.idle.Len()
	}
	waitState := func(open, idle int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			o, i := state()
			if o == open && i == idle {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("open %d idle %d, want %d and %d", o, i, open, idle)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Each waits until the server has put the one before it back to idle,
	// so the order of idleness is the order here.
	k1 := keepAlive(t, addr, "")
	waitState(1, 1)
	k2 := keepAlive(t, addr, "")
	waitState(2, 2)
	ws, err := wire.Dial(context.Background(), "ws://"+addr+"/ws", wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitState(3, 2)
	n1 := keepAlive(t, addr, "")
	waitState(4, 3) // at the cap
	n2 := keepAlive(t, addr, "")
	if !closedWithin(k1, 2*time.Second) {
		t.Fatal("the longest idle connection was not closed for a new one")
	}
	if closedWithin(k2, 100*time.Millisecond) {
		t.Fatal("a younger idle connection was closed too")
	}
	waitState(4, 3)
	// Mid-request (its body still coming) is not idle. (Headers still
	// coming are: a slow sender of headers makes way like an idle one.)
	for _, c := range []net.Conn{k2, n1, n2} {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: duet\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitState(4, 0)
	over := rawConn(t, addr, "")
	if !closedWithin(over, 2*time.Second) {
		t.Fatal("a connection over the cap with none idle was not closed")
	}
	for _, c := range []net.Conn{k2, n1, n2} {
		if closedWithin(c, 50*time.Millisecond) {
			t.Fatal("a connection in the middle of a request was closed")
		}
	}
	// The WebSocket lives on.
	wsCtx, cancelWS := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelWS()
	if _, err := ws.Expect(wsCtx, wire.TypeWelcome); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	if err := ws.Queue(wire.ModeText); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Expect(wsCtx, wire.TypeQueued); err != nil {
		t.Fatalf("the WebSocket after the cap: %v", err)
	}
	if got := metricValue(t, n, `duet_http_connections_refused_total{reason="max"}`); got != 1 {
		t.Errorf("refused{max} = %v, want 1", got)
	}
	if got := metricValue(t, n, `duet_http_connections_evicted_total`); got != 1 {
		t.Errorf("evicted = %v, want 1", got)
	}
	// A closed connection gives its place back.
	ws.Close()
	waitState(3, 0)
	if code := request(rawConn(t, addr, ""), "/healthz"); code != 200 {
		t.Fatalf("after a WebSocket closed: %d", code)
	}
}

// metricValue reads one sample from the node's registry.
func metricValue(t *testing.T, n *Node, sample string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name, labels, _ := strings.Cut(sample, "{")
	labels = strings.TrimSuffix(labels, "}")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no sample %s", sample)
	return 0
}

// emfileListener fails every Accept with EMFILE, as a listener does when
// the process is out of descriptors, and counts the tries.
type emfileListener struct {
	net.Listener
	tries atomic.Int32
	done  chan struct{}
}

func (l *emfileListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	l.tries.Add(1)
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func (l *emfileListener) Close() error { close(l.done); return l.Listener.Close() }

// TestAcceptEMFILEBacksOff: out of descriptors, the server does not spin
// on accept: it retries with a growing pause (net/http's, through the
// connection limiter), and says so in the scrubbed log.
func TestAcceptEMFILEBacksOff(t *testing.T) {
	cfg := testConfig(t)
	var logs logBuffer
	n, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner, done: make(chan struct{})}
	srv, lim := n.httpServer(ln)
	done := make(chan struct{})
	go func() { _ = srv.Serve(lim); close(done) }()
	time.Sleep(500 * time.Millisecond)
	_ = srv.Close()
	<-done
	// 5, 10, 20, 40, 80, 160 ms... : about 7 tries in half a second.
	if tries := ln.tries.Load(); tries < 3 || tries > 10 {
		t.Fatalf("%d accept tries in 500ms, want a handful (backing off)", tries)
	}
	if !strings.Contains(logs.String(), "too many open files; retrying in") {
		t.Fatalf("no accept error logged:\n%s", logs.String())
	}
}

// The descriptor flood runs the node in a child process (this test
// binary again) whose open-file limit is 256.
const floodChildEnv = "DUET_TEST_FLOOD_CHILD"

// TestHTTPFloodChild is the child: not a test on its own.
func TestHTTPFloodChild(t *testing.T) {
	if os.Getenv(floodChildEnv) != "1" {
		t.Skip("the child of TestDescriptorFlood")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DUET_") && !strings.HasPrefix(kv, floodChildEnv) {
			env = append(env, kv)
		}
	}
	cfg, err := configs.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	tc := testConfig(t)
	cfg.PublicIP, cfg.TURN.ListenUDP, cfg.TURN.ListenTCP, cfg.TURN.Secret = tc.PublicIP, tc.TURN.ListenUDP, tc.TURN.ListenTCP, tc.TURN.Secret
	cfg.SFU.ListenIP, cfg.SFU.UDPPort, cfg.SFU.TCPPort = tc.SFU.ListenIP, tc.SFU.UDPPort, tc.SFU.TCPPort
	n, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }() // the parent closes stdin to stop us
	if err := n.Serve(ctx, ln); err != nil {
		t.Fatal(err)
	}
}

// floodChild starts the child node and returns its address and log.
func floodChild(t *testing.T, env ...string) (addr string, logs *logBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHTTPFloodChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), floodChildEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	logs = &logBuffer{}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("child log:\n%s", logs.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	got := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if a, ok := strings.CutPrefix(lines.Text(), "ADDR "); ok {
				got <- a
			}
		}
		close(got)
	}()
	select {
	case a, ok := <-got:
		if !ok {
			t.Fatalf("the child ended without listening:\n%s", logs.String())
		}
		addr = a
	case <-time.After(30 * time.Second):
		t.Fatalf("the child did not listen within 30s:\n%s", logs.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for request(rawConnOrNil(addr), "/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("the child node was not ready within 10s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, logs
}

func rawConnOrNil(addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return failedConn{}
	}
	go func() { time.Sleep(5 * time.Second); c.Close() }()
	return c
}

type failedConn struct{ net.Conn }

func (failedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (failedConn) SetDeadline(time.Time) error      { return nil }
func (failedConn) SetReadDeadline(time.Time) error  { return nil }
func (failedConn) SetWriteDeadline(time.Time) error { return nil }

// TestDescriptorFlood: a node whose process may hold 256 descriptors
// takes ~300 idle connections and still answers /healthz at once; idle
// connections are closed after http.idle_timeout; the node never runs
// out of descriptors (no accept error in its log).
func TestDescriptorFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	const idle = 2 * time.Second
	for _, tt := range []struct {
		name string
		// src is the attacker's source address for connection i.
		src func(i int) string
		// silent connections send nothing; the others one request each.
		silent bool
		metric string // grows with the flood
		// closed by the idle timeout (silent ones wait for their
		// headers' timeout instead)
		idleClosed bool
	}{
		{"idle keep-alives from many addresses", spread, false, "duet_http_connections_evicted_total", true},
		{"silent connections from many addresses", spread, true, "duet_http_connections_evicted_total", false},
		{"idle keep-alives from one address", func(int) string { return "127.0.0.9" }, false, `duet_http_connections_refused_total{reason="per_ip"}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, logs := floodChild(t, "DUET_HTTP_IDLE_TIMEOUT="+idle.String())
			var flood []net.Conn
			for i := range 300 {
				c := rawConn(t, addr, tt.src(i))
				if !tt.silent {
					request(c, "/healthz") // refused ones get no answer
				}
				flood = append(flood, c)
			}
			start := time.Now()
			c := rawConn(t, addr, "127.0.0.1")
			if code := request(c, "/healthz"); code != 200 {
				t.Fatalf("/healthz during the flood: %d", code)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("/healthz took %s during the flood", d)
			}
			if v := scrape(t, addr, tt.metric); v < 50 {
				t.Errorf("%s = %v after the flood, want it counting", tt.metric, v)
			}
			if v := scrape(t, addr, "duet_http_connections_limit"); v != 192 {
				t.Errorf("duet_http_connections_limit = %v, want 192 (256 less the reserve)", v)
			}
			if tt.idleClosed {
				// A fresh keep-alive lives until the idle timeout, not past it.
				k := keepAlive(t, addr, "127.0.0.2")
				t0 := time.Now()
				if closedWithin(k, idle-300*time.Millisecond) {
					t.Fatalf("an idle connection was closed after %s, before http.idle_timeout %s", time.Since(t0), idle)
				}
				if !closedWithin(k, 2*time.Second+300*time.Millisecond) {
					t.Fatalf("an idle connection was still open %s after http.idle_timeout", time.Since(t0)-idle)
				}
				for i, fc := range flood {
					if !closedWithin(fc, 500*time.Millisecond) {
						t.Fatalf("flood connection %d still open after http.idle_timeout", i)
					}
				}
			}
			if strings.Contains(logs.String(), "Accept error") {
				t.Fatalf("the node ran out of descriptors:\n%s", logs.String())
			}
			if strings.Contains(logs.String(), "127.0.") && strings.Contains(logs.String(), "from=net/http") {
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, "from=net/http") && strings.Contains(line, "127.0.") {
						t.Errorf("raw address in net/http's log: %s", line)
					}
				}
			}
		})
	}
}

// spread gives connection i a loopback source address of its own.
func spread(i int) string { return fmt.Sprintf("127.1.%d.%d", i/200, i%200+1) }

// scrape reads one sample from a node's /metrics.
func scrape(t *testing.T, addr, sample string) float64 {
	t.Helper()
	c := rawConn(t, addr, "127.0.0.3")
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: duet\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("/metrics has no %s", sample)
	return 0
}

// TestServerTimeoutsSpareWebSockets: the server's read timeout and the
// per-response write deadline cut a trickled request, but neither a
// WebSocket that outlives them nor an admin's profile that runs longer.
func TestServerTimeoutsSpareWebSockets(t *testing.T) {
	oldRead, oldWrite := readTimeout, writeTimeout
	t.Cleanup(func() { readTimeout, writeTimeout = oldRead, oldWrite })
	readTimeout, writeTimeout = 400*time.Millisecond, 400*time.Millisecond
	cfg := testConfig(t)
	cfg.Admin.Token = "op"
	tn, _ := serveNode(t, cfg, nil, nil, "/readyz")
	addr := strings.TrimPrefix(tn.url, "http://")

	t.Run("WebSocket outlives them", func(t *testing.T) {
		c := dial(t, tn.ws, "ws", nil)
		time.Sleep(1200 * time.Millisecond)
		c.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
		c.expect("queued")
	})
	t.Run("profile runs as long as asked", func(t *testing.T) {
		start := time.Now()
		resp := authGet(t, tn.url+"/debug/pprof/profile?seconds=1", "op")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("profile: %d, %d bytes", resp.StatusCode, len(body))
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("a 1s profile ended after %s", d)
		}
	})
	t.Run("trickled body is cut", func(t *testing.T) {
		c := rawConn(t, addr, "")
		start := time.Now()
		// The body never comes: net/http waits for it (it reads what a
		// handler left unread before answering) until the read timeout.
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: duet\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the trickling connection was not cut within 3s")
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
			t.Fatalf("the trickling connection was cut after %s, want about the read timeout (400ms)", d)
		}
	})
}
