package bidi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

const testPage = `<!doctype html><meta charset="utf-8">
<input id="in"><button id="b" onclick="window.clicks++; window.trusted = event.isTrusted">press</button>
<div style="height:3000px"></div><button id="far" onclick="window.far = true">far</button>
<script>window.clicks = 0;</script>`

// TestFirefox drives a real headless Firefox: evaluation of every value
// shape the e2e tests read, a throw, trusted clicks (also below the fold),
// typing with a non-BMP character, a screenshot, and a clean quit.
func TestFirefox(t *testing.T) {
	exe := testtool.Require(t, "firefox-esr")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, testPage)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	logPath := filepath.Join(t.TempDir(), "firefox.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	b, err := Start(ctx, Options{Exe: exe, ProfileDir: t.TempDir(), Log: logFile})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = b.Close()
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("firefox log:\n%s", out)
		}
	}()
	tab, err := b.NewTab(ctx, 800, 600)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Navigate(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		expr string
		want string // the value's JSON
	}{
		{`1 + 1`, `2`},
		{`"a" + "b"`, `"ab"`},
		{`Promise.resolve(true)`, `true`},
		{`(async () => ({x: [1, null, "y"]}))()`, `{"x":[1,null,"y"]}`},
		{`window.clicks = 0; undefined`, `null`}, // statements, as a script
		{`[NaN].length`, `1`},
	} {
		v, err := tab.Eval(ctx, tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if got, _ := json.Marshal(v); string(got) != tc.want {
			t.Errorf("%s: %s, want %s", tc.expr, got, tc.want)
		}
	}
	var se *ScriptError
	if _, err := tab.Eval(ctx, `Promise.reject(new Error("nope"))`); !errors.As(err, &se) {
		t.Fatalf("a rejected promise gave %v, want a ScriptError", err)
	}

	if err := tab.Click(ctx, "#b"); err != nil {
		t.Fatal(err)
	}
	if err := tab.Click(ctx, "#far"); err != nil {
		t.Fatal(err)
	}
	var state struct {
		Clicks  int  `json:"clicks"`
		Trusted bool `json:"trusted"`
		Far     bool `json:"far"`
	}
	if err := tab.EvalInto(ctx, `({clicks: window.clicks, trusted: window.trusted, far: window.far === true})`, &state); err != nil {
		t.Fatal(err)
	}
	if state.Clicks != 1 || !state.Trusted || !state.Far {
		t.Fatalf("after the clicks: %+v", state)
	}
	const text = "hi B 👋"
	if err := tab.Type(ctx, "#in", text); err != nil {
		t.Fatal(err)
	}
	var typed string
	if err := tab.EvalInto(ctx, `document.querySelector("#in").value`, &typed); err != nil || typed != text {
		t.Fatalf("typed %q (%v), want %q", typed, err, text)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if err := tab.Click(short, "#missing"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("clicking a missing element: %v", err)
	}

	png, err := tab.Screenshot(ctx)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if err := tab.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Exited():
	default:
		t.Fatal("firefox still running after Close")
	}
	if err := b.Call(ctx, "session.status", nil, nil); err == nil {
		t.Fatal("a call after Close succeeded")
	}
}
