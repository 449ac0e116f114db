package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetchat/duet/internal/testtool"
)

// browser starts one headless Chromium with a fake camera and microphone
// in the host namespace; each page is a tab of it.
func browser(t *testing.T) context.Context {
	t.Helper()
	// This machine may have only loopback; Chromium leaves it out of
	// host candidates unless told.
	return startBrowser(t, chromedp.Flag("allow-loopback-in-peer-connection", true))
}

// browserIn starts one headless Chromium inside a namespace of the lab, as
// a user's browser behind that namespace's router. It loads duet from
// origin over plain HTTP, which Chromium is told to treat as secure so
// the page may open the (fake) camera, as it would on HTTPS.
func browserIn(t *testing.T, lab *natLab, ns, origin string) context.Context {
	t.Helper()
	return startBrowser(t,
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", origin),
		inNamespace(t, lab, ns))
}

// inNamespace runs the browser inside namespace ns of the lab. chromedp
// talks to it over a pipe (inherited descriptors), which `ip netns exec`
// passes on untouched.
func inNamespace(t *testing.T, lab *natLab, ns string) chromedp.ExecAllocatorOption {
	t.Helper()
	ip := testtool.Require(t, "ip")
	return chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
		cmd.Args = append([]string{ip, "netns", "exec", lab.ns(ns), cmd.Path}, cmd.Args[1:]...)
		cmd.Path = ip
		// What chromedp does by default: the browser dies with us.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	})
}

func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	exe := testtool.Require(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 800),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// page is one tab showing the duet client.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func openPage(t *testing.T, browserCtx context.Context, name, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	// The first Run on a tab's context opens the tab for the lifetime of
	// that call's context: it must carry no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: opening tab: %v", name, err)
	}
	p := &page{t: t, name: name, ctx: ctx}
	p.do(30*time.Second, chromedp.Navigate(url))
	p.waitTrue(10*time.Second, `typeof window.duet === "object" && window.duet.session !== undefined && window.duet.session !== null && window.duet.session !== ""`)
	return p
}

func (p *page) do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := withTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

func (p *page) click(sel string) {
	p.t.Helper()
	p.do(10*time.Second, chromedp.Click(chromedp.CSS(sel)))
}

func evalOn[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := withTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, js, err)
	}
	return v
}

// waitTrue polls a JavaScript condition in the page.
func (p *page) waitTrue(timeout time.Duration, cond string) {
	p.t.Helper()
	ctx, cancel := withTimeout(p.ctx, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		p.t.Fatalf("%s: waiting for %s: %v (status %q)", p.name, cond, err, p.status())
	}
}

func (p *page) status() string {
	ctx, cancel := withTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#status").textContent`))
	return s
}

func (p *page) waitStatus(want string, timeout time.Duration) {
	p.t.Helper()
	p.waitTrue(timeout, `document.querySelector("#status").textContent.trim() === `+jsString(want))
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

const inboundVideoBytes = `(async () => {
	const pc = window.duet.pc;
	if (!pc) return 0;
	let n = 0;
	(await pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.bytesReceived || 0; });
	return n;
})()`

// waitMediaFlowing waits for the remote video to show frames and for the
// inbound video byte count to grow between two reads.
func (p *page) waitMediaFlowing() {
	p.t.Helper()
	p.waitTrue(30*time.Second, `document.querySelector("#remote-video").videoWidth > 0`)
	first := evalOn[float64](p, inboundVideoBytes)
	p.waitTrue(15*time.Second, `(async () => {
		const pc = window.duet.pc; if (!pc) return false;
		let n = 0;
		(await pc.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.bytesReceived || 0; });
		return n > `+formatFloat(first)+`;
	})()`)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (p *page) chat(text string) {
	p.t.Helper()
	p.do(10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#chat-input"), text),
		chromedp.Click(chromedp.CSS("#chat-send")),
	)
}

func (p *page) waitChatFromStranger(text string) {
	p.t.Helper()
	p.waitTrue(10*time.Second, `[...document.querySelectorAll("#chat-log .stranger")].some(e => e.textContent.includes(`+jsString(text)+`))`)
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := withTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// TestBrowserVideoChat is the core path as a user lives it: two pages
// press Start, see and hear each other, chat both ways; a third arrives and
// Next pairs again; a dropped connection resumes the room, and one that
// never comes back ends it.
func TestBrowserVideoChat(t *testing.T) {
	d := startDuet(t, "DUET_SIGNAL_RESUME_GRACE=4s")
	browserVideoChat(t, d.addr, d.addr, d.addr)
}

// TestBrowserVideoChatTwoNodes is the same path with the store on Redis and
// the pages on two nodes: A and C on one, B on the other.
func TestBrowserVideoChatTwoNodes(t *testing.T) {
	redis := testtool.StartRedis(t)
	var addrs []string
	for _, name := range []string{"node1", "node2"} {
		addrs = append(addrs, startDuetAs(t, name, "DUET_SIGNAL_RESUME_GRACE=4s", "DUET_STORE_BACKEND=redis", "DUET_HTTP_SHUTDOWN_GRACE=1s",
			"DUET_STORE_REDIS_ADDRS="+redis, "DUET_STORE_REDIS_NODE="+name).addr)
	}
	browserVideoChat(t, addrs[0], addrs[1], addrs[0])
}

func browserVideoChat(t *testing.T, addrA, addrB, addrC string) {
	ctx := browser(t)
	pa, pb, pc := startProxy(t, addrA), startProxy(t, addrB), startProxy(t, addrC)

	a := openPage(t, ctx, "A", "http://"+pa.addr()+"/")
	b := openPage(t, ctx, "B", "http://"+pb.addr()+"/")
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 30*time.Second)
		p.waitMediaFlowing()
	}
	room := evalOn[string](a, `window.duet.room`)
	if got := evalOn[string](b, `window.duet.room`); got != room || room == "" {
		t.Fatalf("rooms %q and %q", room, got)
	}
	a.chat("hello from A")
	b.waitChatFromStranger("hello from A")
	b.chat("hi A, B here 👋")
	a.waitChatFromStranger("hi A, B here 👋")
	a.screenshot("paired.png")

	// Camera and microphone toggles switch the local tracks off and on.
	for _, tg := range []struct{ button, tracks string }{{"#toggle-cam", "getVideoTracks"}, {"#toggle-mic", "getAudioTracks"}} {
		track := `document.querySelector("#local-video").srcObject.` + tg.tracks + `()[0]`
		pressed := `document.querySelector("` + tg.button + `").getAttribute("aria-pressed")`
		a.click(tg.button)
		a.waitTrue(5*time.Second, track+`.enabled === false && `+pressed+` === "false"`)
		a.click(tg.button)
		a.waitTrue(5*time.Second, track+`.enabled === true && `+pressed+` === "true"`)
	}
	camTrack := evalOn[string](a, `document.querySelector("#local-video").srcObject.getVideoTracks()[0].id`)

	// A third stranger arrives; A presses Next and meets C. B is told.
	c := openPage(t, ctx, "C", "http://"+pc.addr()+"/")
	c.click("#start-video")
	c.waitStatus("Looking for someone…", 15*time.Second)
	a.click("#next")
	b.waitStatus("Stranger has disconnected", 15*time.Second)
	for _, p := range []*page{a, c} {
		p.waitStatus("Connected", 30*time.Second)
	}
	room2 := evalOn[string](a, `window.duet.room`)
	if room2 == room || evalOn[string](c, `window.duet.room`) != room2 {
		t.Fatalf("after Next: A in %q (was %q), C in %q", room2, room, evalOn[string](c, `window.duet.room`))
	}
	c.waitMediaFlowing()
	a.waitMediaFlowing()
	// Next kept the camera: the same live track, no new permission prompt.
	a.waitTrue(5*time.Second, `(() => { const t = document.querySelector("#local-video").srcObject.getVideoTracks()[0];
		return t.id === `+jsString(camTrack)+` && t.readyState === "live"; })()`)

	// A's network blips: its socket is cut without a close frame. C sees
	// "reconnecting", A comes back to the same room, media flows again.
	evalOn[bool](c, `window.__statuses = [];
		new MutationObserver(() => window.__statuses.push(document.querySelector("#status").textContent.trim()))
			.observe(document.querySelector("#status"), {childList: true, characterData: true, subtree: true});
		true`)
	session := evalOn[string](a, `window.duet.session`)
	pa.cut()
	a.waitTrue(20*time.Second, `window.duet.state === "room" && window.duet.ws && window.duet.ws.readyState === 1 && window.duet.room === `+jsString(room2))
	if got := evalOn[string](a, `window.duet.session`); got != session {
		t.Fatalf("session after resume %q, want %q", got, session)
	}
	c.waitTrue(10*time.Second, `window.__statuses.includes("Stranger is reconnecting…")`)
	c.waitStatus("Connected", 30*time.Second)
	c.waitMediaFlowing()
	c.chat("welcome back")
	a.waitChatFromStranger("welcome back")

	// This time A cannot come back: after the grace C is told.
	pa.refuse()
	pa.cut()
	c.waitStatus("Stranger has disconnected", 20*time.Second)
}

// TestBrowserTextChat: text mode pairs, chats with a typing indicator and
// never starts WebRTC.
func TestBrowserTextChat(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	for _, p := range []*page{a, b} {
		p.do(5*time.Second, chromedp.SendKeys(chromedp.CSS("#interests"), "chess, jazz"))
		p.click("#start-text")
	}
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 15*time.Second)
		p.waitTrue(5*time.Second, `document.querySelector("#common").textContent.includes("chess")`)
	}
	a.do(5*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "typing"))
	b.waitTrue(10*time.Second, `!document.querySelector("#typing").hidden && getComputedStyle(document.querySelector("#typing")).display !== "none"`)
	a.do(5*time.Second, chromedp.Click(chromedp.CSS("#chat-send")))
	b.waitChatFromStranger("typing")
	// The same room on a phone-sized screen.
	b.do(5*time.Second, chromedp.EmulateViewport(360, 640))
	b.screenshot("phone-text.png")
	for _, p := range []*page{a, b} {
		if evalOn[bool](p, `window.duet.pc !== null && window.duet.pc !== undefined`) {
			t.Fatalf("%s: text mode created an RTCPeerConnection", p.name)
		}
	}
	b.click("#stop")
	a.waitStatus("Stranger has disconnected", 10*time.Second)
	b.waitStatus("Press Start to meet someone", 10*time.Second)
}
