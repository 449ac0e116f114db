package testtool

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartRedis runs a throwaway redis-server on a free loopback port, with
// no persistence, and returns its address. It is killed at cleanup.
func StartRedis(t testing.TB, extra ...string) string {
	t.Helper()
	return NewRedis(t, extra...).Addr
}

// Redis is a redis-server a test can kill and start again on the same port
// (fault tests). Without persistence a restart comes back empty.
type Redis struct {
	Addr string
	t    testing.TB
	bin  string
	args []string
	mu   sync.Mutex
	stop func()
	proc *os.Process
}

// NewRedis starts a Redis and stops it at cleanup.
func NewRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin := Require(t, "redis-server")
	port := FreePort(t)
	r := &Redis{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, bin: bin,
		args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...),
	}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start runs the server and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, r.bin, r.args...)
	if err := cmd.Start(); err != nil {
		cancel()
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.proc = cmd.Process
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// CommandContext kills with SIGKILL: no shutdown, no save.
	r.stop = func() { cancel(); <-done }
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		select {
		case <-done:
			r.t.Fatal("redis-server exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill SIGKILLs the server (no-op when it is not running).
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		_ = r.proc.Signal(syscall.SIGCONT) // a stalled server dies too
		r.stop()
		r.stop = nil
	}
}

// Stall freezes the server (SIGSTOP) for d and then lets it go on
// (SIGCONT): connections stay open and nothing is answered meanwhile, as
// when a Redis host swaps or a VM is paused. It blocks for d.
func (r *Redis) Stall(d time.Duration) {
	r.t.Helper()
	r.mu.Lock()
	p := r.proc
	running := r.stop != nil
	r.mu.Unlock()
	if !running {
		r.t.Fatal("Stall: redis-server is not running")
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		r.t.Fatalf("SIGSTOP redis-server: %v", err)
	}
	time.Sleep(d) // the stall itself is the point, not a wait for a condition
	if err := p.Signal(syscall.SIGCONT); err != nil {
		r.t.Fatalf("SIGCONT redis-server: %v", err)
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
			// A loaded test machine can delay gossip for seconds; a short
			// node timeout then calls a live node failed (CLUSTERDOWN).
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "15000"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must say ok: each learns the others' slots by gossip.
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, _ := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s not ok within 30s:\n%s", a, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs
}
