package e2e

// Cross-browser pages. A test that should hold in Firefox as well as in
// Chromium writes its steps against browserPage, which both a Chromium tab
// (*page, browser_test.go) and a Firefox tab (*ffPage, below) satisfy:
//
//	ff := startFirefox(t)                      // one headless Firefox per test function
//	a := openFirefoxPage(t, ff, "A", "http://"+d.addr+"/")
//	b := openPage(t, browser(t), "B", "http://"+d.addr+"/")
//	for _, p := range []browserPage{a, b} {
//		p.click("#start-video")
//		waitStatusOn(p, "Connected", 30*time.Second)
//		waitRemotePlaying(p)
//	}
//	room := evalAs[string](a, `window.duet.room`)
//
//	shotsOnFailure(t, a, b)                   // NAME-failed.png of each if t fails
//
// Firefox runs on a throwaway profile whose prefs give it a fake camera
// and microphone without a prompt, count it as a real capture and let
// WebRTC use loopback (firefoxPrefs); it is driven over WebDriver BiDi
// (internal/testtool/bidi). Its console goes to
// firefox-console.log and its own output to firefox.log in the test's
// artifact directory; MOZ_LOG=mtransport:4 adds its ICE log there.
// Without firefox-esr the test skips, or fails under CI=true.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/internal/testtool/bidi"
)

// browserPage is one tab showing the duet client, in either browser. Each
// method fails the test when the browser cannot do it.
type browserPage interface {
	label() string
	// evalInto evaluates js (awaiting a promise) into out, as JSON would.
	evalInto(js string, out any)
	waitTrue(timeout time.Duration, cond string)
	click(sel string)
	typeText(sel, text string)
	status() string
	screenshot(name string)           // fails the test if it cannot
	saveScreenshot(name string) error // for cleanups, which should not fail
}

// evalAs evaluates js on p into a T.
func evalAs[T any](p browserPage, js string) T {
	var v T
	p.evalInto(js, &v)
	return v
}

// The Chromium tab as a browserPage.

func (p *page) label() string { return p.name }

func (p *page) evalInto(js string, out any) {
	p.t.Helper()
	raw := evalOn[[]byte](p, js)
	if len(raw) == 0 {
		raw = []byte("null") // undefined
	}
	if err := json.Unmarshal(raw, out); err != nil {
		p.t.Fatalf("%s: %s gave %s: %v", p.name, js, raw, err)
	}
}

func (p *page) typeText(sel, text string) {
	p.t.Helper()
	p.do(10*time.Second, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// firefoxPrefs are what a test Firefox needs beyond bidi.QuietPrefs.
func firefoxPrefs() map[string]any {
	return map[string]any{
		// A fake camera and microphone, granted without a prompt: what
		// Chromium's use-fake-device/use-fake-ui flags do.
		"media.navigator.streams.fake":        true,
		"media.navigator.permission.disabled": true,
		// And count that fake camera as a real capture. Firefox trusts a
		// page that captures with all its host addresses, unobfuscated;
		// without this it offers only its default-route address (under a
		// .local name), as to a page that never opened a camera, unlike
		// any user's Firefox in a call.
		"media.navigator.permission.fake": true,
		// Firefox leaves loopback out of ICE (its own host candidates, and
		// STUN/TURN servers on 127.0.0.1) unless told; every node here
		// listens on loopback.
		"media.peerconnection.ice.loopback": true,
	}
}

// firefox is one headless Firefox for a test function; pages are its tabs.
type firefox struct {
	t *testing.T
	b *bidi.Browser

	mu    sync.Mutex
	names map[string]string // tab id -> page name, for the console log
	log   *os.File          // firefox-console.log
}

// startFirefox starts Firefox and ends it when the test ends.
func startFirefox(t *testing.T) *firefox {
	t.Helper()
	exe := testtool.Require(t, "firefox-esr")
	profile := t.TempDir() // removed after Firefox has quit (cleanups run last-in first-out)
	out, err := os.Create(filepath.Join(t.ArtifactDir(), "firefox.log"))
	if err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(t.ArtifactDir(), "firefox-console.log"))
	if err != nil {
		out.Close()
		t.Fatal(err)
	}
	ff := &firefox{t: t, names: map[string]string{}, log: console}
	// Start-up takes a few seconds, far more on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := bidi.Start(ctx, bidi.Options{Exe: exe, ProfileDir: profile, Prefs: firefoxPrefs(), Log: out, OnEvent: ff.event})
	if err != nil {
		out.Close()
		console.Close()
		t.Fatalf("starting firefox: %v", err)
	}
	ff.b = b
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing firefox: %v", err)
		}
		out.Close()
		ff.mu.Lock()
		console.Close()
		ff.log = nil
		ff.mu.Unlock()
		if t.Failed() {
			if log, err := os.ReadFile(out.Name()); err == nil {
				t.Logf("firefox.log:\n%s", tail(log, 4000))
			}
		}
	})
	if err := b.Subscribe(ctx, "log.entryAdded"); err != nil {
		t.Fatalf("firefox: %v", err)
	}
	return ff
}

// event writes console messages and page errors to firefox-console.log.
func (ff *firefox) event(method string, params json.RawMessage) {
	if method != "log.entryAdded" {
		return
	}
	var e struct {
		Level  string `json:"level"`
		Text   string `json:"text"`
		Source struct {
			Context string `json:"context"`
		} `json:"source"`
	}
	if json.Unmarshal(params, &e) != nil {
		return
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.log == nil {
		return
	}
	name := ff.names[e.Source.Context]
	if name == "" {
		name = e.Source.Context
	}
	fmt.Fprintf(ff.log, "%s %s %s: %s\n", time.Now().Format("15:04:05.000"), name, e.Level, e.Text)
}

// ffPage is one Firefox tab showing the duet client.
type ffPage struct {
	t    *testing.T
	name string
	tab  *bidi.Tab
}

// openFirefoxPage opens url in a new tab of ff and waits for the client to
// hold a session, as openPage does in Chromium. The tab closes when t ends.
func openFirefoxPage(t *testing.T, ff *firefox, name, url string) *ffPage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab, err := ff.b.NewTab(ctx, 1280, 800)
	if err != nil {
		t.Fatalf("%s: opening tab: %v", name, err)
	}
	ff.mu.Lock()
	ff.names[tab.ID] = name
	ff.mu.Unlock()
	p := &ffPage{t: t, name: name, tab: tab}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tab.Close(ctx) // the browser's Close ends it anyway
	})
	if err := tab.Navigate(ctx, url); err != nil {
		t.Fatalf("%s: loading %s: %v", name, url, err)
	}
	p.waitTrue(10*time.Second, `typeof window.duet === "object" && !!window.duet.session`)
	return p
}

func (p *ffPage) label() string { return p.name }

func (p *ffPage) ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func (p *ffPage) evalInto(js string, out any) {
	p.t.Helper()
	ctx, cancel := p.ctx(10 * time.Second)
	defer cancel()
	if err := p.tab.EvalInto(ctx, js, out); err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, js, err)
	}
}

// waitTrue polls a JavaScript condition in the page every 100 ms. A
// condition that throws counts as not yet true (the page may be between
// states), and the last throw is reported if it never holds.
func (p *ffPage) waitTrue(timeout time.Duration, cond string) {
	p.t.Helper()
	ctx, cancel := p.ctx(timeout)
	defer cancel()
	var last error
	for {
		v, err := p.tab.Eval(ctx, cond)
		var se *bidi.ScriptError
		switch {
		case err == nil && v == true:
			return
		case err == nil || errors.As(err, &se):
			last = err
		case ctx.Err() == nil:
			p.t.Fatalf("%s: waiting for %s: %v", p.name, cond, err)
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("%s: waiting %v for %s (last error %v, status %q)", p.name, timeout, cond, last, p.status())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *ffPage) click(sel string) {
	p.t.Helper()
	ctx, cancel := p.ctx(10 * time.Second)
	defer cancel()
	if err := p.tab.Click(ctx, sel); err != nil {
		p.t.Fatalf("%s: clicking %s: %v", p.name, sel, err)
	}
}

func (p *ffPage) typeText(sel, text string) {
	p.t.Helper()
	ctx, cancel := p.ctx(10 * time.Second)
	defer cancel()
	if err := p.tab.Type(ctx, sel, text); err != nil {
		p.t.Fatalf("%s: typing into %s: %v", p.name, sel, err)
	}
}

func (p *ffPage) status() string {
	ctx, cancel := p.ctx(3 * time.Second)
	defer cancel()
	var s string
	_ = p.tab.EvalInto(ctx, `document.querySelector("#status").textContent`, &s)
	return s
}

func (p *ffPage) screenshot(name string) {
	p.t.Helper()
	if err := p.saveScreenshot(name); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

func (p *ffPage) saveScreenshot(name string) error {
	ctx, cancel := p.ctx(10 * time.Second)
	defer cancel()
	png, err := p.tab.Screenshot(ctx)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return err
	}
	p.t.Logf("screenshot: %s", path)
	return nil
}

// saveScreenshot is the Chromium tab's screenshot without failing the
// test (for cleanups).
func (p *page) saveScreenshot(name string) error {
	ctx, cancel := withTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return err
	}
	p.t.Logf("screenshot: %s", path)
	return nil
}

// shotsOnFailure saves a screenshot of every page as NAME-failed.png if t
// fails. Call it once the pages are open: cleanups run last-in first-out,
// so it runs before any of their tabs closes and each shows what its user
// saw when the test gave up.
func shotsOnFailure(t *testing.T, pages ...browserPage) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range pages {
			if err := p.saveScreenshot(p.label() + "-failed.png"); err != nil {
				t.Logf("%s: %v", p.label(), err)
			}
		}
	})
}

// Steps a user takes and sees, in either browser.

// waitStatusOn waits for the status line to read want.
func waitStatusOn(p browserPage, want string, timeout time.Duration) {
	p.waitTrue(timeout, `document.querySelector("#status").textContent.trim() === `+jsString(want))
}

// waitRemotePlaying waits until the stranger's video plays as a user sees
// it: the element has a picture and is not paused, and then its clock
// moves on while the browser decodes new frames from growing inbound
// bytes. (Frames come from the stats: Firefox's getVideoPlaybackQuality
// counts no frames of a MediaStream.)
func waitRemotePlaying(p browserPage) {
	p.waitTrue(30*time.Second, `(() => { const v = document.querySelector("#remote-video");
		return v.videoWidth > 0 && !v.paused; })()`)
	type reading struct {
		Frames float64 `json:"frames"`
		Time   float64 `json:"time"`
		Bytes  float64 `json:"bytes"`
	}
	const read = `(async () => {
		const v = document.querySelector("#remote-video");
		let bytes = 0, frames = 0;
		const pc = window.duet.pc;
		if (pc) (await pc.getStats()).forEach(r => {
			if (r.type === "inbound-rtp" && r.kind === "video") { bytes += r.bytesReceived || 0; frames += r.framesDecoded || 0; }
		});
		return {frames, time: v.currentTime, bytes};
	})()`
	first := evalAs[reading](p, read)
	p.waitTrue(15*time.Second, `(async () => { const r = await `+read+`;
		return r.frames > `+formatFloat(first.Frames)+` && r.time > `+formatFloat(first.Time)+` && r.bytes > `+formatFloat(first.Bytes)+`; })()`)
}

// chatOn sends a chat line as a user does: type it, press Send.
func chatOn(p browserPage, text string) {
	p.typeText("#chat-input", text)
	p.click("#chat-send")
}

// waitChatOn waits for the stranger's line to show in the chat log.
func waitChatOn(p browserPage, text string) {
	p.waitTrue(10*time.Second, `[...document.querySelectorAll("#chat-log .stranger")].some(e => e.textContent.includes(`+jsString(text)+`))`)
}
