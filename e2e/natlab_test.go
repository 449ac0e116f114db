package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// natLab is the symmetric-NAT lab of DESIGN.md: a bridge "wan" holding the
// server and two NAT routers (MASQUERADE --random-fully: endpoint-
// dependent mapping and filtering), and one client namespace behind each
// router. Every address lives only inside these namespaces.
type natLab struct {
	t      *testing.T
	prefix string
}

const (
	labServerIP = "198.51.100.1" // TEST-NET-2, the wan
	labToken    = "lab-admin-token"
	labSecret   = "lab-turn-secret"
)

func (l *natLab) ns(name string) string { return l.prefix + "-" + name }

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the NAT lab needs root (network namespaces) and CI=true")
	}
	t.Skip("the NAT lab needs root for network namespaces")
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	requireRoot(t)
	testtool.Require(t, "ip")
	testtool.Require(t, "iptables")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &natLab{t: t, prefix: "duet" + hex.EncodeToString(b)}
	t.Cleanup(l.destroy)
	for _, n := range []string{"wan", "srv", "r1", "r2", "c1", "c2"} {
		l.run("ip", "netns", "add", l.ns(n))
		l.run("ip", "-n", l.ns(n), "link", "set", "lo", "up")
	}
	l.run("ip", "-n", l.ns("wan"), "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", l.ns("wan"), "link", "set", "br0", "up")
	for _, h := range []struct{ ns, ip string }{{"srv", labServerIP}, {"r1", "198.51.100.11"}, {"r2", "198.51.100.12"}} {
		port := "p-" + h.ns
		l.run("ip", "-n", l.ns("wan"), "link", "add", port, "type", "veth", "peer", "name", "wan0", "netns", l.ns(h.ns))
		l.run("ip", "-n", l.ns("wan"), "link", "set", port, "master", "br0", "up")
		l.run("ip", "-n", l.ns(h.ns), "addr", "add", h.ip+"/24", "dev", "wan0")
		l.run("ip", "-n", l.ns(h.ns), "link", "set", "wan0", "up")
	}
	// The client LANs use TEST-NET-3 halves; nothing routes them outside.
	for _, h := range []struct{ router, client, gw, addr string }{
		{"r1", "c1", "203.0.113.1", "203.0.113.2"},
		{"r2", "c2", "203.0.113.129", "203.0.113.130"},
	} {
		l.run("ip", "-n", l.ns(h.router), "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", l.ns(h.client))
		l.run("ip", "-n", l.ns(h.router), "addr", "add", h.gw+"/25", "dev", "lan0")
		l.run("ip", "-n", l.ns(h.router), "link", "set", "lan0", "up")
		l.run("ip", "-n", l.ns(h.client), "addr", "add", h.addr+"/25", "dev", "eth0")
		l.run("ip", "-n", l.ns(h.client), "link", "set", "eth0", "up")
		l.run("ip", "-n", l.ns(h.client), "route", "add", "default", "via", h.gw)
		l.run("ip", "netns", "exec", l.ns(h.router), "sysctl", "-qw", "net.ipv4.ip_forward=1")
		l.run("ip", "netns", "exec", l.ns(h.router), "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE", "--random-fully")
	}
	return l
}

// run executes a setup command, failing the test with its output.
func (l *natLab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a router command (iptables, say) inside a namespace.
func (l *natLab) inNS(ns string, args ...string) string {
	l.t.Helper()
	return l.run("ip", append([]string{"netns", "exec", l.ns(ns)}, args...)...)
}

func (l *natLab) destroy() {
	for _, n := range []string{"c1", "c2", "r1", "r2", "srv", "wan"} {
		// Killing what still runs inside lets the namespace go at once.
		if out, err := exec.Command("ip", "netns", "pids", l.ns(n)).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", l.ns(n)).Run()
	}
}

// startDuet runs duet inside the server namespace with TURN on and waits
// for /readyz through the test peer's -get mode.
func (l *natLab) startDuet(env ...string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("srv"), bin.path, "serve")
	cmd.Env = append(os.Environ(),
		"DUET_HTTP_LISTEN="+labServerIP+":8080",
		"DUET_PUBLIC_IP="+labServerIP,
		"DUET_TURN_ENABLED=true",
		"DUET_TURN_SECRET="+labSecret,
		"DUET_TURN_LISTEN_UDP="+labServerIP+":3478",
		"DUET_TURN_LISTEN_TCP="+labServerIP+":3478",
		"DUET_SFU_LISTEN_IP="+labServerIP,
		"DUET_ADMIN_TOKEN="+labToken,
		"DUET_LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, env...)
	p := startProcess(l.t, cmd, "duet-lab.log")
	p.waitReady(l.t, "duet in the lab", func() error {
		_, err := l.get("/readyz")
		return err
	})
}

// get reads the node's HTTP API from inside the server namespace.
func (l *natLab) get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns("srv"), peerBin.path, "-get", "http://"+labServerIP+":8080"+path, "-token", labToken)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return out.Bytes(), err
}

type peerResult struct {
	Connected bool   `json:"connected"`
	Room      string `json:"room"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Packets   int64  `json:"packets_received"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	Error     string `json:"error"`
}

// peers runs one test peer in each client namespace at once and returns
// their reports; during is called while both are (probably) connected.
func (l *natLab) peers(args []string, during func()) [2]peerResult {
	l.t.Helper()
	type done struct {
		i   int
		out []byte
		err error
	}
	ch := make(chan done, 2)
	for i, ns := range []string{"c1", "c2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		l.t.Cleanup(cancel)
		full := append([]string{"netns", "exec", l.ns(ns), peerBin.path, "-ws", "ws://" + labServerIP + ":8080/ws"}, args...)
		cmd := exec.CommandContext(ctx, "ip", full...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		go func() {
			out, err := cmd.Output()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, stderr.String())
			}
			ch <- done{i, out, err}
		}()
	}
	if during != nil {
		during()
	}
	var res [2]peerResult
	for range 2 {
		d := <-ch
		if d.err != nil {
			l.t.Fatalf("peer %d: %v", d.i+1, d.err)
		}
		if err := json.Unmarshal(bytes.TrimSpace(d.out), &res[d.i]); err != nil {
			l.t.Fatalf("peer %d printed %q: %v", d.i+1, d.out, err)
		}
	}
	l.t.Logf("peers: %+v", res)
	return res
}
