package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// TestNATLabTURNRefusesTheNodeItself: a client behind NAT, with a valid
// credential, asks the relay to send to a UDP service on the node's own
// public address (outside the relay ports): nothing arrives, and the
// drops are counted. The same client relays to a peer elsewhere on the
// wan without loss, so the refusal is about the address, not the client.
func TestNATLabTURNRefusesTheNodeItself(t *testing.T) {
	uclient := testtool.Require(t, "turnutils_uclient")
	peerTool := testtool.Require(t, "turnutils_peer")
	lab := newNATLab(t)
	lab.startDuet()

	// Echo peers: one on the node's own address (a service bound there),
	// one on the other router's wan address (an honest peer).
	const port = 7000
	for _, p := range []struct{ ns, ip string }{{"srv", labServerIP}, {"r2", "198.51.100.12"}} {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.ns(p.ns), peerTool, "-p", strconv.Itoa(port), "-L", p.ip)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("starting turnutils_peer in %s: %v", p.ns, err)
		}
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	}

	run := func(peerIP string) testtool.Uclient {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.ns("c1"), uclient,
			"-W", labSecret, "-e", peerIP, "-r", strconv.Itoa(port), "-n", "30", "-l", "120", "-p", "3478", labServerIP)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		t.Logf("uclient -> %s: %v\n%s", peerIP, err, tailLines(out.String(), 6))
		return testtool.ParseUclient(out.String())
	}

	honest := run("198.51.100.12")
	if why := honest.LossFree(); why != "" {
		t.Fatalf("relaying to an honest peer on the wan: %s", why)
	}
	before := labCounter(t, lab, "duet_turn_own_address_drops_total")
	own := run(labServerIP)
	if own.Received != 0 {
		t.Errorf("the relay delivered %d datagrams to a service on the node's own address", own.Received)
	}
	// The drops show on the node, so the refusal was the relay's, not a
	// lost permission or a dead peer.
	deadline := time.Now().Add(5 * time.Second)
	for labCounter(t, lab, "duet_turn_own_address_drops_total") <= before {
		if time.Now().After(deadline) {
			t.Fatal("duet_turn_own_address_drops_total did not grow")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labCounter reads one unlabelled counter from the lab node's /metrics.
func labCounter(t *testing.T, lab *natLab, name string) float64 {
	t.Helper()
	body, err := lab.get("/metrics")
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	t.Fatalf("%s not on /metrics", name)
	return 0
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
