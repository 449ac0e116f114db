package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// These drive the real binary the way the README's "For network testers"
// section tells people to: coturn's tools, a secret, and
// `duet turn-credentials`.

const testerSecret = "tester-secret"

// runTool runs a command bounded in time and returns its combined output.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	t.Logf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastLines(string(out), 8))
	return string(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func requireNoLoss(t *testing.T, out string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("turnutils_uclient failed: %v", err)
	}
	if why := testtool.ParseUclient(out).LossFree(); why != "" {
		t.Fatal(why)
	}
}

// credentials runs `duet turn-credentials` and returns user and password.
func credentials(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, err := runTool(t, 10*time.Second, bin.path, append([]string{"turn-credentials"}, args...)...)
	if err != nil {
		t.Fatalf("duet turn-credentials: %v", err)
	}
	var user, pass string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "username: "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(line, "password: "); ok {
			pass = v
		}
	}
	if user == "" || pass == "" {
		t.Fatalf("no username/password in:\n%s", out)
	}
	return user, pass
}

func TestTurnutilsAgainstTheBinary(t *testing.T) {
	uclient := testtool.Require(t, "turnutils_uclient")
	stunclient := testtool.Require(t, "turnutils_stunclient")
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	d := startDuet(t, "DUET_TURN_SECRET="+testerSecret, "DUET_TURN_ALLOWED_PEER_CIDRS=127.0.0.1/32",
		"DUET_TURN_MAX_ALLOCATIONS_PER_USER=64", "DUET_TURN_MAX_ALLOCATIONS_PER_IP=256")
	port := strconv.Itoa(d.turnPort)
	user, pass := credentials(t, "--secret", testerSecret, "--user", "tester")

	t.Run("stunclient", func(t *testing.T) {
		out, err := runTool(t, 20*time.Second, stunclient, "-p", port, "127.0.0.1")
		if err != nil || !strings.Contains(out, "UDP reflexive addr: 127.0.0.1:") {
			t.Fatalf("no reflexive address (%v)", err)
		}
	})
	tests := []struct {
		name string
		args []string
	}{
		{"UDP with -W", []string{"-W", testerSecret, "-e", "127.0.0.1", "-r", peer}},
		{"TCP with -W", []string{"-t", "-W", testerSecret, "-e", "127.0.0.1", "-r", peer}},
		{"client to client", []string{"-y", "-W", testerSecret}},
		{"-u/-w from duet turn-credentials", []string{"-u", user, "-w", pass, "-e", "127.0.0.1", "-r", peer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(tt.args, "-n", "100", "-l", "170", "-p", port, "127.0.0.1")
			out, err := runTool(t, 60*time.Second, uclient, args...)
			requireNoLoss(t, out, err)
		})
	}
	t.Run("wrong secret refused", func(t *testing.T) {
		out, err := runTool(t, 30*time.Second, uclient, "-W", "not-it", "-e", "127.0.0.1", "-r", peer, "-n", "10", "-p", port, "127.0.0.1")
		if err == nil || !strings.Contains(out, "error 400") {
			t.Fatal("a wrong secret was not refused")
		}
	})
}

// Credentials duet makes work on coturn's own server with the same
// secret: the scheme really is coturn's.
func TestDuetCredentialsOnCoturn(t *testing.T) {
	turnserver := testtool.Require(t, "turnserver")
	uclient := testtool.Require(t, "turnutils_uclient")
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	port := testtool.FreePort(t)
	cmd := exec.Command(turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", fmt.Sprintf("--listening-port=%d", port),
		"--min-port=50000", "--max-port=50999", "--use-auth-secret", "--static-auth-secret="+testerSecret,
		"--realm=duet", "--allow-loopback-peers", "--log-file=stdout", "--simple-log",
		"--pidfile="+t.TempDir()+"/turnserver.pid")
	p := startProcess(t, cmd, "turnserver.log")
	p.termOK = true
	p.waitReady(t, "turnserver", func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	for _, userPart := range []string{"tester", "ROOMCODE:SESSIONID"} {
		t.Run(userPart, func(t *testing.T) {
			user, pass := credentials(t, "--secret", testerSecret, "--user", userPart)
			out, err := runTool(t, 60*time.Second, uclient, "-u", user, "-w", pass, "-e", "127.0.0.1", "-r", peer,
				"-n", "50", "-l", "170", "-p", strconv.Itoa(port), "127.0.0.1")
			requireNoLoss(t, out, err)
		})
	}
	t.Run("wrong secret refused by coturn", func(t *testing.T) {
		user, pass := credentials(t, "--secret", "other")
		out, err := runTool(t, 60*time.Second, uclient, "-u", user, "-w", pass, "-e", "127.0.0.1", "-r", peer,
			"-n", "5", "-p", strconv.Itoa(port), "127.0.0.1")
		if err == nil || strings.Contains(out, "Total lost packets 0") {
			t.Fatal("coturn accepted a credential made with another secret")
		}
	})
}
