package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/node"
)

// serve runs a real node for the load generator to talk to.
func serve(t *testing.T, cfg *configs.Config) string {
	t.Helper()
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String()
	if code := helper([]string{"ready", url + "/readyz"}, io.Discard, io.Discard); code != 0 {
		t.Fatal("node not ready")
	}
	return "ws://" + ln.Addr().String() + "/ws"
}

func benchConfig(t *testing.T) *configs.Config {
	t.Helper()
	cfg, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Roles.TURN, cfg.Roles.SFU = false, false
	cfg.HTTP.ShutdownGrace = time.Second
	// Twenty users meet everyone in a blink; let them meet again.
	cfg.Matcher.AvoidRepeat = 0
	l := &cfg.Limits
	l.ConnectBurstPerIP, l.QueueRate, l.QueueBurst, l.ChatRate, l.ChatBurst = 1000, 1000, 1000, 1000, 1000
	l.SessionsPerIP, l.JoinsPerMinute, l.IPJoinsPerMinute = 1000, 100000, 100000
	return cfg
}

// TestMatchRun: the match mode makes matches and measures both latencies,
// and with two nodes on Redis it sees cross-node relays.
func TestMatchRun(t *testing.T) {
	tests := []struct {
		name  string
		urls  func(t *testing.T) []string
		cross bool
	}{
		{"memory", func(t *testing.T) []string { return []string{serve(t, benchConfig(t))} }, false},
		{"redis two nodes", func(t *testing.T) []string {
			addr := testtool.StartRedis(t)
			var urls []string
			for _, name := range []string{"b1", "b2"} {
				cfg := benchConfig(t)
				cfg.Store.Backend, cfg.Store.Redis.Addrs, cfg.Store.Redis.Node = "redis", []string{addr}, name
				urls = append(urls, serve(t, cfg))
			}
			return urls
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := matchConfig{URLs: tt.urls(t), Users: 20, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond, Mode: "video"}
			res, err := runMatch(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Matches == 0 || res.Notify.N < 2*int(res.Matches)-cfg.Users {
				t.Fatalf("matches %d, notify samples %d", res.Matches, res.Notify.N)
			}
			if got := res.RelayLocal.N + res.RelayCross.N; got == 0 {
				t.Fatal("no relay measured")
			}
			if tt.cross && res.RelayCross.N == 0 {
				t.Fatal("two nodes but no cross-node relay measured")
			}
			if !tt.cross && res.RelayCross.N != 0 {
				t.Fatalf("one node but %d cross-node relays", res.RelayCross.N)
			}
		})
	}
}

// TestCommandLine: flags are checked, and -json writes a summary the
// bench script can read back with `get`.
func TestCommandLine(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"match", "-users", "3"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "even") {
		t.Fatalf("odd users: code %d, %q", code, errb.String())
	}
	if code := run([]string{"nonsense"}, &out, &errb); code != 2 {
		t.Fatalf("unknown mode: code %d", code)
	}
	url := serve(t, benchConfig(t))
	out.Reset()
	if code := run([]string{"match", "-json", "-urls", url, "-users", "4", "-duration", "1s", "-warmup", "100ms"}, &out, &errb); code != 0 {
		t.Fatalf("run: %d %s", code, errb.String())
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Users != 4 {
		t.Fatalf("json: %v %+v", err, res)
	}
	f := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := helper([]string{"get", f, "users"}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "4" {
		t.Fatalf("get users = %q (%d)", out.String(), code)
	}
	// metrics reads the node's own page: the four users' sessions ended
	// with the run, goroutines did not.
	out.Reset()
	metricsURL := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws") + "/metrics"
	if code := helper([]string{"metrics", metricsURL, "go_goroutines", "no_such_metric"}, &out, &errb); code != 0 {
		t.Fatalf("metrics: %d %s", code, errb.String())
	}
	if got := strings.Fields(out.String()); len(got) != 2 || got[0] == "0" || got[1] != "0" {
		t.Fatalf("metrics = %q, want goroutines and 0", out.String())
	}
}

// TestMediaRun: the media mode streams through a real node's SFU and
// counts what crossed it.
func TestMediaRun(t *testing.T) {
	cfg := benchConfig(t)
	cfg.Roles.SFU, cfg.SFU.Mode = true, "always"
	cfg.SFU.ListenIP, cfg.SFU.UDPPort, cfg.SFU.TCPPort = "127.0.0.1", 0, 0
	cfg.PublicIP = "127.0.0.1"
	url := serve(t, cfg)
	res, err := runMedia(context.Background(), mediaConfig{URL: url, Rooms: 2, Duration: 2 * time.Second, VideoKbps: 300, AudioKbps: 50}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received == 0 || res.Forwarded == 0 {
		t.Fatalf("nothing crossed the SFU: %+v", res)
	}
	if res.Received > res.Sent {
		t.Fatalf("received %d of %d sent", res.Received, res.Sent)
	}
}

// TestIdleRun: the idle mode holds sessions from several loopback
// addresses; each got its welcome, none dropped while held, and the
// node's memory was read.
func TestIdleRun(t *testing.T) {
	url := serve(t, benchConfig(t))
	res, err := runIdle(context.Background(), idleConfig{URL: url, Sessions: 40, Addrs: 4, Rate: 1000, Hold: 300 * time.Millisecond, PID: os.Getpid()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 40 || res.Failed != 0 || res.Dropped != 0 {
		t.Fatalf("idle run: %+v", res)
	}
	if res.NodeRSSAfter == 0 || res.NodeGoroutines == 0 {
		t.Fatalf("node figures missing: %+v", res)
	}
	if a, b := sourceAddr(0, 300), sourceAddr(299, 300); a.IP.Equal(b.IP) || !a.IP.IsLoopback() || !b.IP.IsLoopback() {
		t.Fatalf("source addresses %v and %v", a, b)
	}
}

func TestGoBenchTable(t *testing.T) {
	in := `goos: linux
pkg: github.com/duetchat/duet/sfu
BenchmarkRelay-2   	 1000	      30 ns/op	       0 B/op	       0 allocs/op
BenchmarkRelay-2   	 1000	      10 ns/op	       0 B/op	       0 allocs/op
BenchmarkRelay-2   	 1000	      20 ns/op	       0 B/op	       0 allocs/op
pkg: github.com/duetchat/duet/matcher
BenchmarkMatchLatency/woken-2 	1	4897012 ns/op	0.075 p50-ms	0.334 p99-ms
PASS
`
	var out bytes.Buffer
	if err := goBenchTable(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| sfu Relay-2 | 3 | 20 ns/op, 0 B/op, 0 allocs/op |", "| matcher MatchLatency/woken-2 | 1 | 4.897e+06 ns/op, 0.075 p50-ms, 0.334 p99-ms |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSDPHead(t *testing.T) {
	tests := []struct {
		frame, typ, room string
		ok               bool
	}{
		{`{"type":"offer","room":"Br7e-_x","sdp":"v=0\r\n"}`, "offer", "Br7e-_x", true},
		{`{"type":"answer","room":"r1","sdp":"v=0"}`, "answer", "r1", true},
		{`{"room":"r1","type":"offer","sdp":"v=0"}`, "", "", false}, // another order: encoding/json's turn
		{`{"type":"offer","room":"a\"b","sdp":""}`, "", "", false},  // escaped room
		{`{"type":"chat","room":"r1","text":"hi"}`, "", "", false},
		{`{"type":"offer","room":"r1`, "", "", false},
	}
	for _, tt := range tests {
		typ, room, ok := sdpHead([]byte(tt.frame))
		if typ != tt.typ || room != tt.room || ok != tt.ok {
			t.Errorf("sdpHead(%s) = %q, %q, %v; want %q, %q, %v", tt.frame, typ, room, ok, tt.typ, tt.room, tt.ok)
		}
	}
}
