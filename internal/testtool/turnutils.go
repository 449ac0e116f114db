package testtool

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// StartTURNPeer runs coturn's turnutils_peer (a UDP echo) on a free
// loopback port, waits until it echoes, and returns the port. The peer
// also listens on port+1 (uclient sends its RTCP stream there), so both
// must be free and both must echo; a port another test grabbed meanwhile
// costs a retry on a new one.
func StartTURNPeer(t testing.TB) int {
	t.Helper()
	bin := Require(t, "turnutils_peer")
	for range 5 {
		port := FreePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-p", strconv.Itoa(port), "-L", "127.0.0.1")
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("starting turnutils_peer: %v", err)
		}
		stop := func() { cancel(); _ = cmd.Wait() }
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if echoes(fmt.Sprintf("127.0.0.1:%d", port)) && echoes(fmt.Sprintf("127.0.0.1:%d", port+1)) {
				t.Cleanup(stop)
				return port
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
	}
	t.Fatal("turnutils_peer did not echo on two adjacent ports in 5 tries")
	return 0
}

func echoes(addr string) bool {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "ping"
}

// Uclient is what a turnutils_uclient run reported at its end.
type Uclient struct {
	Sent, Received int
	Lost           int
	LossPct        float64
	Summary        bool // the final totals and loss lines were printed
}

var (
	uclientTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	uclientLoss   = regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`)
)

// ParseUclient reads the summary turnutils_uclient prints when it ends.
func ParseUclient(out string) Uclient {
	var u Uclient
	tot := uclientTotals.FindAllStringSubmatch(out, -1)
	loss := uclientLoss.FindStringSubmatch(out)
	if tot == nil || loss == nil {
		return u
	}
	last := tot[len(tot)-1]
	u.Sent, _ = strconv.Atoi(last[1])
	u.Received, _ = strconv.Atoi(last[2])
	u.Lost, _ = strconv.Atoi(loss[1])
	u.LossPct, _ = strconv.ParseFloat(loss[2], 64)
	u.Summary = true
	return u
}

// LossFree reports why a run was not loss-free, or "" when it was: a
// summary, nothing lost, and every message sent came back.
func (u Uclient) LossFree() string {
	switch {
	case !u.Summary:
		return "turnutils_uclient printed no loss summary"
	case u.Lost != 0 || u.LossPct != 0:
		return fmt.Sprintf("lost %d packets (%.2f%%)", u.Lost, u.LossPct)
	case u.Sent == 0 || u.Received != u.Sent:
		return fmt.Sprintf("sent %d, received %d; want equal and non-zero", u.Sent, u.Received)
	}
	return ""
}
