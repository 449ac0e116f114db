package node

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
)

// serveNode runs a node on ln (nil: a loopback port) with log (nil: as
// startNode logs) and waits until path answers 200 (over TLS when cfg
// has a certificate). It stops at cleanup.
func serveNode(t *testing.T, cfg *configs.Config, log *slog.Logger, ln net.Listener, path string) (*testNode, *Node) {
	t.Helper()
	if log == nil {
		log = testLogger(t)
	}
	n, err := New(cfg, log)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			n.Close()
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, ln) }()
	scheme := "http"
	if cfg.HTTP.TLSCertFile != "" {
		scheme = "https"
	}
	addr := ln.Addr().String()
	tn := &testNode{url: scheme + "://" + addr, ws: "ws://" + addr + "/ws"}
	var once sync.Once
	tn.stop = func() { once.Do(func() { stopNode(t, cancel, done) }) }
	t.Cleanup(tn.stop)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext:     dialerFor(ln),
	}, Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(tn.url + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return tn, n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not 200 within 5s", path)
	return nil, nil
}

// dialerFor dials as a listener wrapped with a dialer of its own would
// have the node's clients dial (a network namespace), else plainly.
func dialerFor(ln net.Listener) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := ln.(interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}); ok {
		return d.DialContext
	}
	var d net.Dialer
	return d.DialContext
}

// logBuffer collects a node's log lines for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
