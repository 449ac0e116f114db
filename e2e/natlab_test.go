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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// natLab is the symmetric-NAT lab of DESIGN.md: a bridge "wan" holding the
// server and two NAT routers (MASQUERADE --random-fully: endpoint-
// dependent mapping and filtering), and one client namespace behind each
// router. Every address lives only inside these namespaces.
//
// In the cloud layout the server is not on the wan itself: it has a
// private address behind a router "gw" that maps the public address onto
// it one to one, as a cloud provider maps a VM's public address.
type natLab struct {
	t      *testing.T
	prefix string
	names  []string // namespaces, in the order they are torn down
}

const (
	labServerIP = "198.51.100.1" // TEST-NET-2, the wan: the address clients reach the node on
	labPrivIP   = "10.0.0.2"     // the node's own address in the cloud layout
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

// newNATLab builds the lab with the server on the wan: public_ip is an
// address of its own.
func newNATLab(t *testing.T) *natLab { return buildLab(t, false) }

// newCloudLab builds the lab with the server behind a 1:1 NAT: public_ip
// is not an address of the host (DESIGN.md, "Cloud layout").
func newCloudLab(t *testing.T) *natLab { return buildLab(t, true) }

func buildLab(t *testing.T, cloud bool) *natLab {
	t.Helper()
	requireRoot(t)
	testtool.Require(t, "ip")
	testtool.Require(t, "iptables")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &natLab{t: t, prefix: "duet" + hex.EncodeToString(b)}
	l.names = []string{"c1", "c2", "r1", "r2", "srv", "wan"}
	if cloud {
		l.names = append(l.names, "gw")
	}
	t.Cleanup(l.destroy)
	for _, n := range l.names {
		l.run("ip", "netns", "add", l.ns(n))
		l.run("ip", "-n", l.ns(n), "link", "set", "lo", "up")
	}
	l.run("ip", "-n", l.ns("wan"), "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", l.ns("wan"), "link", "set", "br0", "up")
	edge := "srv" // the namespace holding labServerIP on the wan
	if cloud {
		edge = "gw"
	}
	for _, h := range []struct{ ns, ip string }{{edge, labServerIP}, {"r1", "198.51.100.11"}, {"r2", "198.51.100.12"}} {
		port := "p-" + h.ns
		l.run("ip", "-n", l.ns("wan"), "link", "add", port, "type", "veth", "peer", "name", "wan0", "netns", l.ns(h.ns))
		l.run("ip", "-n", l.ns("wan"), "link", "set", port, "master", "br0", "up")
		l.run("ip", "-n", l.ns(h.ns), "addr", "add", h.ip+"/24", "dev", "wan0")
		l.run("ip", "-n", l.ns(h.ns), "link", "set", "wan0", "up")
	}
	if cloud {
		// The VM: a private address, its default route through gw,
		// which maps labServerIP onto it both ways.
		l.run("ip", "-n", l.ns("gw"), "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", l.ns("srv"))
		l.run("ip", "-n", l.ns("gw"), "addr", "add", "10.0.0.1/24", "dev", "lan0")
		l.run("ip", "-n", l.ns("gw"), "link", "set", "lan0", "up")
		l.run("ip", "-n", l.ns("srv"), "addr", "add", labPrivIP+"/24", "dev", "eth0")
		l.run("ip", "-n", l.ns("srv"), "link", "set", "eth0", "up")
		l.run("ip", "-n", l.ns("srv"), "route", "add", "default", "via", "10.0.0.1")
		l.inNS("gw", "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// Two relay allocations on the node reach each other through gw
		// (hairpin); no ICMP redirect should teach the VM a shortcut.
		l.inNS("gw", "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0")
		l.inNS("gw", "sysctl", "-qw", "net.ipv4.conf.lan0.send_redirects=0")
		l.inNS("gw", "iptables", "-t", "nat", "-A", "PREROUTING", "-d", labServerIP, "-j", "DNAT", "--to-destination", labPrivIP)
		l.inNS("gw", "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", labPrivIP, "-j", "SNAT", "--to-source", labServerIP)
	} else {
		// A server has a default route; its address is the one duet
		// finds there.
		l.run("ip", "-n", l.ns("srv"), "route", "add", "default", "dev", "wan0")
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

// routersDrop makes both client routers drop forwarded packets matching
// match (iptables arguments, e.g. "-p", "udp") until the end of t, pass
// or fail.
func (l *natLab) routersDrop(t *testing.T, match ...string) {
	t.Helper()
	for _, r := range []string{"r1", "r2"} {
		l.inNS(r, append(append([]string{"iptables", "-A", "FORWARD"}, match...), "-j", "DROP")...)
		t.Cleanup(func() {
			args := append(append([]string{"netns", "exec", l.ns(r), "iptables", "-D", "FORWARD"}, match...), "-j", "DROP")
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Errorf("removing the drop rule on %s: %v\n%s", r, err, out)
			}
		})
	}
}

// blockUDP is the network of issue 16: both routers drop all UDP and TCP
// to the TURN port, so neither P2P nor TURN can work and only TCP to the
// SFU's port gets through.
func (l *natLab) blockUDP(t *testing.T) {
	t.Helper()
	l.routersDrop(t, "-p", "udp")
	l.routersDrop(t, "-p", "tcp", "--dport", "3478")
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
	for _, n := range l.names {
		// Killing what still runs inside lets the namespace go at once.
		if out, err := exec.Command("ip", "netns", "pids", l.ns(n)).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", l.ns(n)).Run()
	}
}

// startDuet runs duet inside the server namespace as the README's
// operator runs it: public_ip, turn.secret and admin.token set, every
// listen address at its default (HTTP :8080, TURN :3478 UDP and TCP, SFU
// :8443 UDP and TCP, all on every address); env adds test settings (a
// mode, a timeout), never an address. It waits for /readyz.
func (l *natLab) startDuet(env ...string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("srv"), bin.path, "serve")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DUET_") { // nothing from the caller's shell
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"DUET_PUBLIC_IP="+labServerIP,
		"DUET_TURN_SECRET="+labSecret,
		"DUET_ADMIN_TOKEN="+labToken,
		"DUET_LOG_LEVEL=debug",
	)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); strings.Contains(k, "LISTEN") || strings.HasSuffix(k, "_PORT") {
			l.t.Fatalf("the lab runs duet on its default addresses; %s is not for it", k)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := startProcess(l.t, cmd, "duet-lab.log")
	p.waitReady(l.t, "duet in the lab", func() error {
		_, err := l.get("/readyz")
		return err
	})
}

// get reads the node's HTTP API (default port) from inside the server
// namespace.
func (l *natLab) get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns("srv"), peerBin.path, "-get", "http://127.0.0.1:8080"+path, "-token", labToken)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return out.Bytes(), err
}

type peerResult struct {
	Connected        bool     `json:"connected"`
	Room             string   `json:"room"`
	Local            string   `json:"local"`
	Remote           string   `json:"remote"`
	Packets          int64    `json:"packets_received"`
	Path             string   `json:"path"`
	Protocol         string   `json:"protocol"`
	LocalAddr        string   `json:"local_addr"`
	RemoteAddr       string   `json:"remote_addr"`
	RemoteCandidates []string `json:"remote_candidates"`
	Error            string   `json:"error"`
}

// labRoom is a room of the admin API as the lab tests read it.
type labRoom struct {
	Room string  `json:"room"`
	Path string  `json:"path"`
	AToB labFlow `json:"a_to_b"`
	BToA labFlow `json:"b_to_a"`
}

type labFlow struct {
	Bytes float64 `json:"bytes"`
	NACKs float64 `json:"nacks"`
}

// watchRoom polls /api/rooms until a room on path has carried bytes both
// ways and carries more at a later reading, and more holds for it (nil:
// nothing more); it returns that reading, or the zero room after limit.
func (l *natLab) watchRoom(path string, limit time.Duration, more func(labRoom) bool) labRoom {
	return l.watchRoomVia(l.get, path, limit, more)
}

// watchRoomVia is watchRoom reading /api/rooms through get.
func (l *natLab) watchRoomVia(get func(path string) ([]byte, error), path string, limit time.Duration, more func(labRoom) bool) labRoom {
	first := map[string]labRoom{}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		body, err := get("/api/rooms")
		if err != nil {
			l.t.Logf("reading /api/rooms: %v", err)
			continue
		}
		var list struct {
			Rooms []labRoom `json:"rooms"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			l.t.Logf("/api/rooms: %v: %s", err, body)
			continue
		}
		if len(list.Rooms) > 0 {
			l.t.Logf("/api/rooms: %s", body)
		}
		for _, r := range list.Rooms {
			if r.Path != path || r.AToB.Bytes == 0 || r.BToA.Bytes == 0 {
				continue
			}
			f, ok := first[r.Room]
			if !ok {
				first[r.Room] = r
				continue
			}
			if r.AToB.Bytes > f.AToB.Bytes && r.BToA.Bytes > f.BToA.Bytes && (more == nil || more(r)) {
				return r
			}
		}
	}
	return labRoom{}
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

// checkNetworkView: the node says what it binds (every address, default
// ports) and what it advertises (public_ip), and whether public_ip is an
// address of its own (local) or, in the cloud layout, assumed to be
// mapped onto the private address: in GET /api/node and in its log.
func checkNetworkView(t *testing.T, lab *natLab, local bool, mappedOnto string) {
	t.Helper()
	body, err := lab.get("/api/node")
	if err != nil {
		t.Fatalf("/api/node: %v %s", err, body)
	}
	var v struct {
		Network struct {
			PublicIP   string `json:"public_ip"`
			PublicIPIs string `json:"public_ip_is"`
			MappedOnto string `json:"mapped_onto"`
			TURN       struct {
				BindsUDP   string `json:"binds_udp"`
				BindsTCP   string `json:"binds_tcp"`
				Advertises string `json:"advertises"`
			} `json:"turn"`
			SFU struct {
				BindsUDP   string `json:"binds_udp"`
				BindsTCP   string `json:"binds_tcp"`
				Gathers    string `json:"gathers"`
				Advertises string `json:"advertises"`
			} `json:"sfu"`
			Notes []string `json:"notes"`
		} `json:"network"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("/api/node: %v %s", err, body)
	}
	t.Logf("/api/node: %s", body)
	n := v.Network
	wantIs, gathers := "local", labServerIP
	if !local {
		wantIs, gathers = "mapped", mappedOnto
	}
	if n.PublicIP != labServerIP || n.PublicIPIs != wantIs || n.MappedOnto != mappedOnto {
		t.Errorf("public_ip %s is %q onto %q; want %s is %q onto %q", n.PublicIP, n.PublicIPIs, n.MappedOnto, labServerIP, wantIs, mappedOnto)
	}
	if n.TURN.BindsUDP != "0.0.0.0:3478" || n.TURN.BindsTCP != "0.0.0.0:3478" || n.TURN.Advertises != labServerIP {
		t.Errorf("TURN %+v; want binds 0.0.0.0:3478 (UDP, TCP), advertises %s", n.TURN, labServerIP)
	}
	if n.SFU.BindsUDP != "0.0.0.0:8443" || n.SFU.BindsTCP != "0.0.0.0:8443" || n.SFU.Gathers != gathers || n.SFU.Advertises != labServerIP {
		t.Errorf("SFU %+v; want binds 0.0.0.0:8443 (UDP, TCP), gathers %s, advertises %s", n.SFU, gathers, labServerIP)
	}
	note := "public_ip " + labServerIP + " is not an address of this host: assumed to be mapped 1:1 onto " + mappedOnto +
		"; if it is not, clients cannot reach this node"
	log, err := os.ReadFile(filepath.Join(lab.t.ArtifactDir(), "duet-lab.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "public_ip_is="+wantIs) {
		t.Errorf("the start-up log does not say public_ip_is=%s", wantIs)
	}
	if local {
		if len(n.Notes) != 0 {
			t.Errorf("notes %q for a local public_ip", n.Notes)
		}
		return
	}
	if len(n.Notes) != 1 || n.Notes[0] != note {
		t.Errorf("notes %q, want %q", n.Notes, note)
	}
	if !strings.Contains(string(log), note) {
		t.Errorf("the start-up log does not say %q", note)
	}
}
