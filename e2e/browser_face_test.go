package e2e

import (
	"context"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// faceEnv turns the face check on with a re-check every second during
// calls and a grace long enough for a slow, shared machine.
var faceEnv = []string{
	"DUET_SIGNAL_FACE_CHECK=true",
	"DUET_SIGNAL_FACE_CHECK_INTERVAL=1s",
	"DUET_SIGNAL_FACE_CHECK_MISSING=warn_then_leave",
	"DUET_SIGNAL_FACE_CHECK_GRACE=6s",
}

// TestBrowserFaceCheck: Chromium's default fake camera shows no face (a
// moving pattern). With signal.face_check on, the real model, run in the
// page's worker, finds none: the page does not queue and says why, and
// the node is sent nothing to count.
func TestBrowserFaceCheck(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, faceEnv...)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/")
	a.click("#start-video")
	a.waitTrue(60*time.Second, systemLine("No face in view"))
	if st := evalOn[string](a, `window.duet.state`); st != "idle" {
		t.Fatalf("state %q after no face, want idle", st)
	}
	if s := a.status(); strings.Contains(s, "Looking") {
		t.Fatalf("queued without a face: status %q", s)
	}
	checkRanInWorker(t, a)
	if m := grepLines(string(httpGet(t, "http://"+d.addr+"/metrics", "")), "duet_face_checks_total{"); m != "" {
		t.Fatalf("the node counted a check that sent nothing:\n%s", m)
	}
	a.screenshot("face-none.png")
}

// TestBrowserFaceCheckCall: a fake camera showing a face (a public-domain
// photograph played by Chromium as a Y4M file) queues; two such pages meet.
// During the call A's picture is swapped for a blank one by a test shim
// between the camera and the page: the re-check (the real model again)
// warns, sees the face come back, and when it goes for good A leaves the
// room after the grace and B is told. The node counts only yes/no events.
func TestBrowserFaceCheckCall(t *testing.T) {
	ctx := startBrowser(t, chromedpLoopback(), faceCamera(t, 2))
	d := startDuet(t, faceEnv...)
	url := "http://" + d.addr + "/"
	a := openPageWith(t, ctx, "A", url, cameraShim(""))
	b := openPage(t, ctx, "B", url)
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 60*time.Second)
	b.click("#start-video")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 60*time.Second)
	}
	checkRanInWorker(t, a)
	metrics := func() string { return string(httpGet(t, "http://"+d.addr+"/metrics", "")) }
	if m := metrics(); !strings.Contains(m, `duet_face_checks_total{result="face"} 2`) {
		t.Fatalf("the node did not count two queues with a face:\n%s", grepLines(m, "duet_face"))
	}
	room := evalOn[string](a, `window.duet.room`)

	evalOn[bool](a, `window.__faceHidden = true`)
	a.waitTrue(30*time.Second, systemLine("We can't see your face"))
	a.screenshot("face-gone.png")
	evalOn[bool](a, `window.__faceHidden = false`)
	a.waitTrue(30*time.Second, systemLine("your face is in view again"))
	if got := evalOn[string](a, `window.duet.room`); got != room {
		t.Fatalf("A left room %q although the face came back within the grace (now %q)", room, got)
	}

	evalOn[bool](a, `window.__faceHidden = true`)
	a.waitTrue(60*time.Second, systemLine("your face was not in view"))
	b.waitStatus("Stranger has disconnected", 15*time.Second)
	if st := evalOn[string](a, `window.duet.state`); st != "idle" {
		t.Fatalf("A is %q after leaving for no face, want idle", st)
	}
	// Where a browser has no module workers or OffscreenCanvas, the page
	// runs the same model on its own thread; it finds B's face there too.
	var res struct {
		Face  bool   `json:"face"`
		Where string `json:"where"`
	}
	b.evalInto(`(async () => {
		const { FaceCheck } = await import('/face.js');
		const fc = new FaceCheck();
		fc.loadWorker = async () => { throw new Error('no workers here (test)'); };
		const s = await navigator.mediaDevices.getUserMedia({ video: true });
		const r = await fc.check(s);
		s.getTracks().forEach((t) => t.stop());
		return { face: r.face === true, where: fc.stats.where + '/' + fc.stats.backend };
	})()`, &res)
	if !res.Face || res.Where != "page/wasm" {
		t.Errorf("on the page's own thread the check gave %+v, want a face on page/wasm", res)
	}

	m := metrics()
	for _, want := range []string{`duet_face_rechecks_total{event="missing"} 2`, `duet_face_rechecks_total{event="back"} 1`, `duet_face_rechecks_total{event="left"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "duet_face"))
		}
	}
}

// cameraShim is a script for a page's every new document: getUserMedia's
// video goes through a canvas that shows the camera (or, with picture, a
// data: URL of an image) until window.__faceHidden is set, and a blank
// grey while it is. The page's face check looks at what the canvas shows.
func cameraShim(picture string) string {
	return `(() => {
	const md = navigator.mediaDevices;
	if (!md) return;
	const real = md.getUserMedia.bind(md);
	const picture = ` + jsString(picture) + `;
	window.__faceHidden = false;
	md.getUserMedia = async (want) => {
		const s = await real(want);
		const vt = s.getVideoTracks()[0];
		if (!vt) return s;
		let src;
		if (picture) {
			src = new Image();
			src.src = picture;
			await src.decode();
		} else {
			src = document.createElement('video');
			src.muted = true;
			src.srcObject = new MediaStream([vt]);
			await src.play();
		}
		const c = document.createElement('canvas');
		c.width = 640; c.height = 480;
		const g = c.getContext('2d');
		const draw = () => {
			if (window.__faceHidden) { g.fillStyle = '#808080'; g.fillRect(0, 0, c.width, c.height); }
			else g.drawImage(src, 0, 0, c.width, c.height);
		};
		draw();
		setInterval(draw, 40);
		const out = c.captureStream(25).getVideoTracks()[0];
		if (picture) vt.stop();
		return new MediaStream([out, ...s.getAudioTracks()]);
	};
})();`
}

// chromedpLoopback is browser()'s flag: this machine may have only
// loopback for WebRTC.
func chromedpLoopback() chromedp.ExecAllocatorOption {
	return chromedp.Flag("allow-loopback-in-peer-connection", true)
}

// facePictureURL is the face picture as a data: URL, for cameraShim.
func facePictureURL(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(facePicture)
	if err != nil {
		t.Fatal(err)
	}
	return "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(b)
}

// openPageWith is openPage with script run first in every document.
func openPageWith(t *testing.T, browserCtx context.Context, name, url, script string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: opening tab: %v", name, err)
	}
	p := &page{t: t, name: name, ctx: ctx}
	p.do(10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: script})
		return err
	}))
	p.do(30*time.Second, chromedp.Navigate(url))
	p.waitTrue(10*time.Second, `typeof window.duet === "object" && !!window.duet.session`)
	return p
}

func systemLine(text string) string {
	return `[...document.querySelectorAll("#chat-log .system")].some(e => e.textContent.includes(` + jsString(text) + `))`
}

// checkRanInWorker: the check loaded its model in a Worker, on the wasm
// backend (the page's main thread only grabbed frames).
func checkRanInWorker(t *testing.T, p *page) { t.Helper(); checkRanInWorkerOn(t, p) }

func checkRanInWorkerOn(t *testing.T, p browserPage) {
	t.Helper()
	where := evalAs[string](p, `window.duet.face ? window.duet.face.where + "/" + window.duet.face.backend : "none"`)
	if where != "worker/wasm" {
		t.Fatalf("%s: face check ran in %q, want worker/wasm", p.label(), where)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
