package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetchat/duet/internal/testtool"
)

// labDomain is the node's name in the 443-only lab: every namespace's
// /etc/hosts (ip netns exec mounts /etc/netns/NS/hosts) and pebble's test
// DNS put it at labServerIP.
const labDomain = "duet.test"

// TestNATLab443: the networks of hotels and strict offices, where both
// routers drop everything but TCP to port 443 of the server. The node runs
// as README's "HTTPS by itself" tells an operator (http.listen :443,
// http.acme with a domain and email; the CA here is pebble in the
// server's namespace, validating real challenges), gets its certificate,
// and answers TURN over TLS on 443. Two pion peers and then two Chromium
// pages, trusting only pebble's root, connect through turns:duet.test:443,
// and the admin API shows their rooms on the turn path.
func TestNATLab443(t *testing.T) {
	lab := newNATLab(t)
	labHosts(t, lab, "srv", "c1", "c2")
	srvWrap := []string{"ip", "netns", "exec", lab.ns("srv")}
	p := testtool.StartPebble(t, testtool.PebbleOptions{
		HTTPPort: 80, TLSPort: 443, Address: labServerIP, Wrap: srvWrap,
		Get: func(url, caFile string) ([]byte, error) { return lab.getTrusting("srv", url, caFile) },
	})
	root := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(root, p.RootPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(t.TempDir(), "acme")
	lab.startHTTPSDuet(p, cacheDir, root)
	lab.only443(t)

	// Go programs in the lab (the test peers, -get) trust pebble's root
	// as their system roots.
	t.Setenv("SSL_CERT_FILE", root)

	t.Run("pion peers", func(t *testing.T) {
		var seen labRoom
		res := lab.peers([]string{"-ws", "wss://" + labDomain + "/ws", "-connect-timeout", "30s", "-hold", "15s"}, func() {
			seen = lab.watchRoomVia(func(path string) ([]byte, error) {
				return lab.getTrusting("srv", "https://"+labDomain+path, root)
			}, "turn", 50*time.Second, nil)
		})
		for i, r := range res {
			if !r.Connected {
				t.Fatalf("peer %d did not connect through turns: on 443: %s", i+1, r.Error)
			}
			if r.Local != "relay" && r.Remote != "relay" {
				t.Errorf("peer %d selected %s/%s, want a relay candidate", i+1, r.Local, r.Remote)
			}
			if r.Packets < 100 {
				t.Errorf("peer %d received %d RTP packets, want >= 100", i+1, r.Packets)
			}
		}
		if seen.Room == "" || seen.Room != res[0].Room {
			t.Fatalf("/api/rooms showed %+v on the turn path; the peers were in %s", seen, res[0].Room)
		}
	})

	t.Run("Chromium pages", func(t *testing.T) {
		spki := leafSPKI(t, cacheDir)
		origin := "https://" + labDomain
		a := openPage(t, browser443(t, lab, "c1", spki), "A", origin+"/")
		b := openPage(t, browser443(t, lab, "c2", spki), "B", origin+"/")
		a.click("#start-video")
		a.waitStatus("Looking for someone…", 15*time.Second)
		b.click("#start-video")
		t.Cleanup(func() {
			if t.Failed() {
				for _, pg := range []*page{a, b} {
					t.Logf("%s candidates: %s", pg.name, evalOn[string](pg, localCandidates))
				}
			}
		})
		for _, pg := range []*page{a, b} {
			pg.waitStatus("Connected", 60*time.Second)
			pg.waitMediaFlowing()
			// The local end of the selected pair is a relay candidate
			// allocated over TLS: turns: on the HTTPS port.
			pg.waitTrue(10*time.Second, `(async () => {
				const pc = window.duet.pc; if (!pc) return false;
				const stats = await pc.getStats();
				let pair = null;
				stats.forEach(r => { if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
				if (!pair) return false;
				const local = stats.get(pair.localCandidateId);
				return local.candidateType === "relay" && local.relayProtocol === "tls";
			})()`)
			pg.waitTrue(10*time.Second, `document.querySelector("#path").textContent.includes("Relay via TURN")`)
		}
		room := evalOn[string](a, `window.duet.room`)
		seen := lab.watchRoomVia(func(path string) ([]byte, error) {
			return lab.getTrusting("srv", "https://"+labDomain+path, root)
		}, "turn", 30*time.Second, nil)
		if seen.Room != room {
			t.Fatalf("/api/rooms never showed room %s on the turn path with bytes growing both ways (saw %+v)", room, seen)
		}
		a.screenshot("natlab-443.png")
	})
}

// labHosts gives the namespaces an /etc/hosts naming labDomain.
func labHosts(t *testing.T, lab *natLab, names ...string) {
	t.Helper()
	for _, n := range names {
		dir := filepath.Join("/etc/netns", lab.ns(n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		hosts := "127.0.0.1 localhost\n" + labServerIP + " " + labDomain + "\n"
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// getTrusting GETs url from inside namespace ns, trusting caFile alone.
func (l *natLab) getTrusting(ns, url, caFile string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns(ns), peerBin.path, "-get", url, "-token", labToken)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("GET %s in %s: %v: %s", url, ns, err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// startHTTPSDuet runs duet in the server namespace on the config README's
// "HTTPS by itself" has an operator write, with the lab's CA as the ACME
// directory, and waits until https://duet.test/readyz answers with a
// certificate that chains to pebble's root.
func (l *natLab) startHTTPSDuet(p *testtool.Pebble, cacheDir, root string) {
	l.t.Helper()
	conf := fmt.Sprintf(`http:
  listen: ":443"
  acme:
    enabled: true
    domains: [%s]
    email: ops@example.org
    cache_dir: %s
    directory_url: %s
    ca_root_file: %s
public_ip: %s
turn:
  secret: %s
admin:
  token: %s
signal:
  p2p_timeout: 40s   # the lab shares two cores with other tests; the SFU cannot help behind these routers
log:
  level: debug
`, labDomain, cacheDir, p.Directory, p.CAFile, labServerIP, labSecret, labToken)
	file := filepath.Join(l.t.TempDir(), "duet.yaml")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns("srv"), bin.path, "serve", "--config", file)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DUET_") && !strings.HasPrefix(kv, "SSL_CERT_FILE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	proc := startProcess(l.t, cmd, "duet-lab-443.log")
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := l.getTrusting("srv", "https://"+labDomain+"/readyz", root)
		if err == nil {
			return
		}
		select {
		case <-proc.done:
			l.t.Fatalf("duet exited before it was ready: %v", proc.err)
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("https://%s/readyz not answering with pebble's certificate within 90s: %v", labDomain, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// only443 makes both client routers drop every forwarded packet except
// TCP to the server's port 443 and what answers it.
func (l *natLab) only443(t *testing.T) {
	t.Helper()
	for _, c := range []string{"c1", "c2"} {
		// A dropped SYN (TURN over TCP on 3478) costs the clients 7 s
		// instead of Linux's two minutes: pion closes a peer connection
		// only once every relay dial has ended.
		l.inNS(c, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=2")
	}
	for _, r := range []string{"r1", "r2"} {
		l.inNS(r, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		l.inNS(r, "iptables", "-A", "FORWARD", "-i", "lan0", "-d", labServerIP, "-p", "tcp", "--dport", "443", "-j", "ACCEPT")
		l.inNS(r, "iptables", "-A", "FORWARD", "-j", "DROP")
	}
}

// leafSPKI is the base64 SHA-256 of the node's certificate's public key,
// read from its ACME cache: Chromium trusts it through
// --ignore-certificate-errors-spki-list (it has no flag for a root).
func leafSPKI(t *testing.T, cacheDir string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, labDomain+".crt") {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no certificate for %s under %s", labDomain, cacheDir)
	}
	b, err := os.ReadFile(found)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s is not PEM", found)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser443 is a Chromium in namespace ns that accepts the node's
// certificate (by its key) and nothing else unknown.
func browser443(t *testing.T, lab *natLab, ns, spki string) context.Context {
	t.Helper()
	return startBrowser(t,
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		inNamespace(t, lab, ns))
}

// localCandidates lists the page's local ICE candidates (for a failure's
// log): type, protocol, the TURN URL and transport a relay one came from.
const localCandidates = `(async () => {
	const pc = window.duet.pc; if (!pc) return "no peer connection";
	const out = [];
	(await pc.getStats()).forEach(r => { if (r.type === "local-candidate") out.push([r.candidateType, r.protocol, r.relayProtocol || "", r.url || ""].join(" ")); });
	return out.join("; ");
})()`
