package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/wire"
)

// TestRollingRestartOnOnePort: with http.reuse_port the next duet binds
// the address the running one serves. The old one, stopped with SIGTERM,
// tells its clients to reconnect, and the same URL now reaches the new
// one: the room resumes there, the strangers talk again, and the old
// process exits cleanly once they have moved. A duet without the option
// is refused the address with a message that names it.
func TestRollingRestartOnOnePort(t *testing.T) {
	redis := testtool.StartRedis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))
	env := []string{"DUET_STORE_BACKEND=redis", "DUET_STORE_REDIS_ADDRS=" + redis, "DUET_STORE_REDIS_KEY_PREFIX=roll:",
		"DUET_HTTP_REUSE_PORT=true", "DUET_HTTP_SHUTDOWN_GRACE=20s", "DUET_SIGNAL_RESUME_GRACE=20s"}
	old := startDuetOn(t, "roll-old", addr, append(env, "DUET_STORE_REDIS_NODE=old")...)

	a, b := dialPeer(t, addr, "", "a"), dialPeer(t, addr, "", "b")
	for _, p := range []*wsPeer{a, b} {
		p.ok(p.Queue(wire.ModeText))
		p.expect(wire.TypeQueued)
	}
	room := a.expect(wire.TypeMatched).Room
	if got := b.expect(wire.TypeMatched).Room; got != room {
		t.Fatalf("a in %s, b in %s", room, got)
	}
	talk := func(from, to *wsPeer, text string) {
		t.Helper()
		from.ok(from.Chat(room, text))
		if m := to.expect(wire.TypeChat, wire.TypePeerReconnecting, wire.TypePeerResumed); m.Text != text {
			t.Fatalf("%s got %s", to.name, m.Raw)
		}
	}
	talk(a, b, "before the restart")

	// Without the option the address is taken, and the error says why.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain := exec.CommandContext(ctx, bin.path, "serve")
	plain.Env = append(os.Environ(), "DUET_HTTP_LISTEN="+addr, "DUET_TURN_ENABLED=false", "DUET_SFU_ENABLED=false", "DUET_SFU_MODE=off")
	out, err := plain.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !bytes.Contains(out, []byte("http.reuse_port")) {
		t.Fatalf("a second duet without http.reuse_port: %v\n%s", err, out)
	}

	// A short grace for the new one: at cleanup nobody is left to move.
	next := startDuetOn(t, "roll-new", addr, append(env, "DUET_STORE_REDIS_NODE=new", "DUET_HTTP_SHUTDOWN_GRACE=3s")...)
	// Its readiness probe may have reached the old one: wait for its own word.
	waitLog(t, next.proc, "roll-new.log", "duet listening")

	if err := old.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*wsPeer{a, b} {
		if m := p.expect(wire.TypeError, wire.TypePeerReconnecting); m.Code != wire.CodeUnavailable {
			t.Fatalf("%s got %s, want error unavailable", p.name, m.Raw)
		}
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := p.NextFrame(closeCtx)
		cancelClose()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Fatalf("%s: %v, want close 1012", p.name, err)
		}
	}
	resume := func(p *wsPeer) *wsPeer {
		t.Helper()
		q := dialPeer(t, addr, "?resume="+p.welcome.Token, p.name+"'")
		if q.welcome.Session != p.welcome.Session {
			t.Fatalf("%s resumed as a new session", p.name)
		}
		if m := q.expect(wire.TypeMatched); m.Room != room {
			t.Fatalf("%s: matched %s, want room %s", q.name, m.Raw, room)
		}
		return q
	}
	a2, b2 := resume(a), resume(b)
	talk(a2, b2, "after the restart, a")
	talk(b2, a2, "after the restart, b")

	select {
	case <-old.proc.done:
		if old.proc.err != nil {
			t.Fatalf("the old duet exited with %v after SIGTERM", old.proc.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the old duet still draining 20s after its sessions moved")
	}
	// The new one holds the address alone now, and serves it.
	talk(a2, b2, "still here")
}

// waitLog waits until p's log (in the artifact directory) has line.
func waitLog(t *testing.T, p *process, logName, line string) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), logName)
	p.waitReady(t, logName, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), line) {
			return fmt.Errorf("no %q yet", line)
		}
		return nil
	})
}
