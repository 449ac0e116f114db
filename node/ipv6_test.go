package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// v6ns is a network namespace of the test's own whose loopback holds
// addresses of documentation /64s, so real sockets come from many
// addresses of one /64. Sockets are made in it from a thread that has
// joined it.
type v6ns struct {
	name string
	fd   *os.File
}

const v6Server = "2001:db8:ff::1"

// v6Clients are the client addresses the namespace holds: 18 of one /64,
// a few of a second, one of a third.
func v6Clients() []string {
	var out []string
	for i := 1; i <= 18; i++ {
		out = append(out, fmt.Sprintf("2001:db8:1::%x", i))
	}
	return append(out, "2001:db8:2::1", "2001:db8:2::2", "2001:db8:3::1")
}

func newV6NS(t *testing.T) *v6ns {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the IPv6 /64 test needs root (a network namespace) and CI=true")
		}
		t.Skip("the IPv6 /64 test needs root for a network namespace")
	}
	ipTool := testtool.Require(t, "ip")
	ns := &v6ns{name: fmt.Sprintf("duet-v6-%d", os.Getpid())}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command(ipTool, "netns", "del", ns.name).Run() // a leftover of a killed run
	run("netns", "add", ns.name)
	t.Cleanup(func() {
		if ns.fd != nil {
			ns.fd.Close()
		}
		if out, err := exec.Command(ipTool, "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns.name, err, out)
		}
	})
	run("-n", ns.name, "link", "set", "lo", "up")
	batch := exec.Command(ipTool, "-n", ns.name, "-batch", "-")
	var cmds strings.Builder
	for _, a := range append(v6Clients(), v6Server) {
		fmt.Fprintf(&cmds, "addr add %s/128 dev lo nodad\n", a)
	}
	batch.Stdin = strings.NewReader(cmds.String())
	if out, err := batch.CombinedOutput(); err != nil {
		t.Fatalf("adding addresses: %v\n%s", err, out)
	}
	f, err := os.Open("/run/netns/" + ns.name)
	if err != nil {
		t.Fatal(err)
	}
	ns.fd = f
	return ns
}

// do runs f on a thread inside the namespace. The thread stays locked
// and ends with the goroutine, never going back to the runtime's pool.
func (ns *v6ns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.fd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// dialFrom dials inside the namespace from src.
func (ns *v6ns) dialFrom(src string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.do(func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsListener is a listener in the namespace; serveNode dials it with
// DialContext (from the server's own address).
type nsListener struct {
	net.Listener
	ns *v6ns
}

func (l nsListener) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.ns.dialFrom(v6Server)(ctx, network, addr)
}

func (ns *v6ns) listen(t *testing.T) nsListener {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() error {
		var err error
		ln, err = net.Listen("tcp6", "["+v6Server+"]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return nsListener{Listener: ln, ns: ns}
}

// wsFrom opens a WebSocket from src; it returns the client, or the HTTP
// status that refused it.
func (ns *v6ns) wsFrom(t *testing.T, url, src string) (*client, int) {
	t.Helper()
	d := websocket.Dialer{NetDialContext: ns.dialFrom(src), HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp == nil {
			t.Fatalf("%s: dial: %v", src, err)
		}
		return nil, resp.StatusCode
	}
	c := &client{t: t, name: src, wc: wire.NewClient(ws), ws: ws}
	t.Cleanup(func() { _ = c.wc.Close() })
	c.welcome = c.expect(wire.TypeWelcome)
	return c, http.StatusSwitchingProtocols
}

// TestIPv6PrefixLimitsAndBans: real sockets from many addresses of one
// /64. With limits.ipv6_prefix 64 the /64 is one client for
// limits.connections_per_ip, for the listener's per-address cap and for
// an operator's ban on one of its addresses; another /64 is untouched.
// At /128 every address counts alone.
func TestIPv6PrefixLimitsAndBans(t *testing.T) {
	ns := newV6NS(t)
	for _, tt := range []struct {
		name     string
		prefix   int
		admitted int  // of the 18 sockets from one /64
		banBlock bool // a ban on ::1 covers ::2 and ::7
	}{
		{"one client per /64", 64, 2, true},
		{"one client per address at /128", 128, 18, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Limits.IPv6Prefix = tt.prefix
			cfg.Limits.ConnectionsPerIP = 2
			cfg.Limits.ConnectBurstPerIP = 100
			cfg.Admin.Token = "op"
			ln := ns.listen(t)
			serveNode(t, cfg, nil, ln, "/readyz")
			base := "http://[" + v6Server + "]:" + fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
			wsURL := strings.Replace(base, "http", "ws", 1) + "/ws"

			clients := v6Clients()
			var block []*client
			for _, src := range clients[:18] {
				c, code := ns.wsFrom(t, wsURL, src)
				switch {
				case c != nil:
					block = append(block, c)
				case code != http.StatusTooManyRequests:
					t.Fatalf("%s refused with %d, want 429", src, code)
				}
			}
			if len(block) != tt.admitted {
				t.Fatalf("%d of 18 sockets from one /64 admitted, want %d", len(block), tt.admitted)
			}
			other, code := ns.wsFrom(t, wsURL, "2001:db8:2::1")
			if other == nil {
				t.Fatalf("a socket from another /64 refused with %d", code)
			}

			// The operator bans one address of the first /64.
			admin := &http.Client{Transport: &http.Transport{DialContext: ns.dialFrom("2001:db8:3::1")}, Timeout: 5 * time.Second}
			req, _ := http.NewRequest("POST", base+"/api/bans", strings.NewReader(`{"ip":"2001:db8:1::1","duration":"1h"}`))
			req.Header.Set("Authorization", "Bearer op")
			resp, err := admin.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("POST /api/bans = %d", resp.StatusCode)
			}
			// Its live sessions hear it: ::1's always, ::2's when the ban
			// covers the /64.
			expectBanned(t, block[0], "", time.Hour)
			if tt.banBlock {
				expectBanned(t, block[1], "", time.Hour)
			} else if m, err := readWithin(block[1], 300*time.Millisecond); err == nil {
				t.Fatalf("%s heard of the ban on 2001:db8:1::1: %v", block[1].name, m)
			}
			for _, c := range block {
				c.ws.Close()
			}
			// A new socket from another address of the /64.
			time.Sleep(100 * time.Millisecond) // the node sees the closes
			again, code := ns.wsFrom(t, wsURL, "2001:db8:1::7")
			if again == nil {
				t.Fatalf("2001:db8:1::7 refused with %d after the others closed", code)
			}
			if tt.banBlock {
				expectBanned(t, again, "", time.Hour)
				if code := again.closeCode(5 * time.Second); code != websocket.ClosePolicyViolation {
					t.Fatalf("banned socket closed with %d, want 1008", code)
				}
			} else {
				again.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
				again.expect("queued")
			}
			// The other /64 is untouched.
			other.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
			if m := other.read(5 * time.Second); m.str("type") != "queued" && m.str("type") != "matched" {
				t.Fatalf("the other /64 after the ban: %v", m)
			}
		})
	}
	t.Run("listener counts the /64", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Limits.ConnectionsPerIP = 2
		cfg.HTTP.MaxConnectionsPerIP = 2
		ln := ns.listen(t)
		serveNode(t, cfg, nil, ln, "/healthz")
		addr := ln.Addr().String()
		conn := func(src string) net.Conn {
			c, err := ns.dialFrom(src)(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		a, b := conn("2001:db8:1::1"), conn("2001:db8:1::2")
		third := conn("2001:db8:1::3")
		if !closedWithin(third, 2*time.Second) {
			t.Fatal("a third connection from the /64 stayed open over http.max_connections_per_ip 2")
		}
		for _, c := range []net.Conn{a, b, conn("2001:db8:2::1")} {
			if code := request(c, "/healthz"); code != 200 {
				t.Fatalf("%s: /healthz %d", c.LocalAddr(), code)
			}
		}
	})
}
