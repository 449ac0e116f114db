package node

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// get fetches url with the bearer token (if any) and returns the status
// and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// With metrics.listen set, /metrics and the profiles are served there,
// by their own server, and no longer on the public listener.
func TestMetricsListen(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "op"
	cfg.Metrics.Listen = "127.0.0.1:0"
	tn, n := serveNode(t, cfg, nil, nil, "/readyz")
	addr := n.MetricsAddr()
	if addr == nil {
		t.Fatal("no metrics address with metrics.listen set")
	}
	ops := "http://" + addr.String()

	if code, body := get(t, ops+"/metrics", ""); code != 200 || !strings.Contains(body, "duet_sessions") {
		t.Errorf("metrics listener /metrics: %d, duet_sessions in body %v", code, strings.Contains(body, "duet_sessions"))
	}
	if code, _ := get(t, ops+"/debug/pprof/", ""); code != http.StatusUnauthorized {
		t.Errorf("metrics listener pprof without the token: %d, want 401", code)
	}
	if code, _ := get(t, ops+"/debug/pprof/", "nope"); code != http.StatusUnauthorized {
		t.Errorf("metrics listener pprof with a wrong token: %d, want 401", code)
	}
	if code, body := get(t, ops+"/debug/pprof/", "op"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("metrics listener pprof with the token: %d", code)
	}
	// Only the operator's endpoints are there.
	for _, path := range []string{"/", "/healthz", "/api/stats", "/ws"} {
		if code, _ := get(t, ops+path, "op"); code != http.StatusNotFound {
			t.Errorf("metrics listener %s: %d, want 404", path, code)
		}
	}
	// The public listener has lost them, with or without the token.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/trace"} {
		if code, _ := get(t, tn.url+path, "op"); code != http.StatusNotFound {
			t.Errorf("main listener %s: %d, want 404", path, code)
		}
	}
	if code, _ := get(t, tn.url+"/healthz", ""); code != 200 {
		t.Errorf("main listener /healthz: %d", code)
	}

	// It stops with the node.
	tn.stop()
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Error("metrics listener still accepts after the node stopped")
	}
}

// Without metrics.listen (the default) /metrics stays on the main
// listener, as it always was.
func TestMetricsOnMainListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "op"
	tn, n := serveNode(t, cfg, nil, nil, "/readyz")
	if n.MetricsAddr() != nil {
		t.Fatalf("metrics address %v with metrics.listen empty", n.MetricsAddr())
	}
	if code, body := get(t, tn.url+"/metrics", ""); code != 200 || !strings.Contains(body, "duet_sessions") {
		t.Errorf("/metrics: %d", code)
	}
	if code, _ := get(t, tn.url+"/debug/pprof/", ""); code != http.StatusUnauthorized {
		t.Errorf("pprof without the token: %d, want 401", code)
	}
	if code, _ := get(t, tn.url+"/debug/pprof/", "op"); code != 200 {
		t.Errorf("pprof with the token: %d", code)
	}
}

// A metrics.listen that cannot be bound stops New with an error naming
// the key; with http.reuse_port the next duet binds beside this one.
func TestMetricsListenBind(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig(t)
	cfg.Metrics.Listen = taken.Addr().String()
	if n, err := New(cfg, quiet); err == nil {
		n.Close()
		t.Fatal("New bound a taken metrics.listen")
	} else if !strings.Contains(err.Error(), "metrics.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q: want it to name metrics.listen and the cause", err)
	}

	t.Run("reuse_port", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.HTTP.ReusePort = true
		cfg.Metrics.Listen = "127.0.0.1:0"
		old, err := New(cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		cfg2 := testConfig(t)
		cfg2.HTTP.ReusePort = true
		cfg2.Metrics.Listen = old.MetricsAddr().String()
		next, err := New(cfg2, quiet)
		if err != nil {
			t.Fatalf("the next duet cannot bind metrics.listen beside the old one: %v", err)
		}
		next.Close()
	})
}

// metrics.lock_profile turns on Go's lock-contention sampling, so the
// admin's /debug/pprof/mutex shows where goroutines waited; off, nothing
// is sampled.
func TestLockProfile(t *testing.T) {
	t.Cleanup(func() { runtime.SetMutexProfileFraction(0); runtime.SetBlockProfileRate(0) })
	for _, on := range []bool{false, true} {
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
		cfg := testConfig(t)
		cfg.Admin.Token = "op"
		cfg.Metrics.LockProfile = on
		tn, _ := serveNode(t, cfg, nil, nil, "/readyz")
		if got := runtime.SetMutexProfileFraction(-1); (got > 0) != on {
			t.Fatalf("lock_profile %v: mutex profile fraction %d", on, got)
		}
		if !on {
			continue
		}
		if code, _ := get(t, tn.url+"/debug/pprof/mutex?debug=1", ""); code != http.StatusUnauthorized {
			t.Fatalf("mutex profile without the token: %d", code)
		}
		// Contend a lock until a sample of it shows up: the runtime
		// samples each contended unlock, so this takes one round.
		deadline := time.Now().Add(10 * time.Second)
		for {
			contend()
			code, body := get(t, tn.url+"/debug/pprof/mutex?debug=1", "op")
			if code == 200 && strings.Contains(body, "node.contend") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no sample of a contended lock in /debug/pprof/mutex: %d %.300s", code, body)
			}
		}
	}
}

// contend makes one goroutine wait for a mutex another holds.
func contend() {
	var mu sync.Mutex
	mu.Lock()
	waiting := make(chan struct{})
	done := make(chan struct{})
	go func() {
		close(waiting)
		mu.Lock()
		mu.Unlock()
		close(done)
	}()
	<-waiting
	runtime.Gosched()
	mu.Unlock()
	<-done
}
