// Package e2e drives the real duet binary from the outside: real
// processes, real sockets, a real Chromium with a fake camera.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// binary is a program TestMain builds once for every test here.
type binary struct{ path string }

// Set once in TestMain before any test runs, then read-only.
var bin, peerBin binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "duet-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.path = filepath.Join(dir, "duet")
	peerBin.path = filepath.Join(dir, "testpeer")
	for _, b := range []struct{ out, pkg string }{{bin.path, "../cmd/duet"}, {peerBin.path, "./testpeer"}} {
		build := exec.Command("go", "build", "-race", "-o", b.out, b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", b.pkg+":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// kill SIGKILLs the process and waits for it: a crash, not a shutdown.
func (p *process) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("process did not die within 10s of SIGKILL")
	}
}

// requireTool fails under CI=true and skips elsewhere when a tool is missing.
// process is a started command whose end can be observed many times.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its Wait result, valid once done is closed
	// termOK accepts death by SIGTERM: other people's tools (coturn's)
	// do not exit 0 on it the way duet does.
	termOK bool
}

// startProcess starts cmd with its output in the test's artifact
// directory. At cleanup it gets SIGTERM (SIGKILL after 15 s); a non-zero
// exit after SIGTERM fails the test, and a failed test shows the log tail.
func startProcess(t *testing.T, cmd *exec.Cmd, logName string) *process {
	t.Helper()
	logPath := filepath.Join(t.ArtifactDir(), logName)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done: // already gone: its exit was reported where it mattered
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil && !(p.termOK && killedByTERM(p.err)) {
					t.Errorf("%s exited with %v after SIGTERM", logName, p.err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
				t.Errorf("%s did not stop within 15s of SIGTERM", logName)
			}
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s:\n%s", logName, tail(b, 8000))
			}
		}
	})
	return p
}

func killedByTERM(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// waitReady polls probe until it succeeds, failing fast if p exits.
func (p *process) waitReady(t *testing.T, what string, probe func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for probe() != nil {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v", what, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 15s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// duet is one running duet process.
type duet struct {
	addr     string // 127.0.0.1:port
	turnPort int    // the relay's UDP and TCP port on 127.0.0.1
	proc     *process
}

// startDuet runs `duet serve` with env on a free loopback port and waits
// for /readyz.
func startDuet(t *testing.T, env ...string) *duet {
	t.Helper()
	return startDuetAs(t, "duet", env...)
}

// startDuetAs is startDuet with its log in name.log.
func startDuetAs(t *testing.T, name string, env ...string) *duet {
	t.Helper()
	return startDuetOn(t, name, fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t)), env...)
}

// startDuetOn is startDuetAs on a given HTTP address.
func startDuetOn(t *testing.T, name, addr string, env ...string) *duet {
	t.Helper()
	cmd := exec.Command(bin.path, "serve")
	turnPort := testtool.FreePort(t)
	turnAddr := fmt.Sprintf("127.0.0.1:%d", turnPort)
	// These nodes share the host's network with each other, with the
	// other packages' tests and with whatever else runs here, so they
	// cannot have the default ports: HTTP and TURN get free ports on
	// loopback (nothing outside this machine needs them) and the SFU any
	// free port. Nothing else is overridden: the SFU binds every address
	// and gathers from public_ip, 127.0.0.1, as an operator's node does
	// from its own public_ip. The deployments themselves (default ports,
	// every address) are the NAT lab's tests (natlab_test.go).
	cmd.Env = append(os.Environ(), "DUET_HTTP_LISTEN="+addr, "DUET_LOG_LEVEL=debug",
		"DUET_PUBLIC_IP=127.0.0.1", "DUET_TURN_LISTEN_UDP="+turnAddr, "DUET_TURN_LISTEN_TCP="+turnAddr,
		"DUET_SFU_UDP_PORT=0", "DUET_SFU_TCP_PORT=0")
	cmd.Env = append(cmd.Env, env...)
	p := startProcess(t, cmd, name+".log")
	p.waitReady(t, "duet", func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return &duet{addr: addr, turnPort: turnPort, proc: p}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// proxy is a TCP forwarder in front of duet whose connections the test can
// cut without a WebSocket close frame: what a Wi-Fi blip looks like to the
// server and to the browser.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut drops every open connection at once (RST, no close frame).
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// refuse stops accepting new connections, so a client cannot come back.
func (p *proxy) refuse() { p.ln.Close() }

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// httpGet returns the body of GET url, with the admin bearer token when
// token is not empty.
func httpGet(t *testing.T, url, token string) []byte {
	t.Helper()
	resp := testtool.AdminRequest(t, "GET", url, token, nil)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
