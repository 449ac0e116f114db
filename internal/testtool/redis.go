package testtool

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis runs a throwaway redis-server on a free loopback port, with
// no persistence, and returns its address. It is killed at cleanup.
func StartRedis(t testing.TB, extra ...string) string {
	t.Helper()
	bin := Require(t, "redis-server")
	port := FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return addr
			}
		}
		select {
		case <-done:
			t.Fatal("redis-server exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartRedisCluster runs three cluster-enabled redis-servers on free
// loopback ports, joins them into one Cluster (no replicas) with
// redis-cli, waits until the cluster is ok, and returns their addresses.
func StartRedisCluster(t testing.TB) []string {
	t.Helper()
	cli := Require(t, "redis-cli")
	var addrs []string
	for range 3 {
		addrs = append(addrs, StartRedis(t, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	for {
		out, _ := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
		if strings.Contains(string(out), "cluster_state:ok") {
			return addrs
		}
		if ctx.Err() != nil {
			t.Fatalf("cluster not ok within 30s:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
