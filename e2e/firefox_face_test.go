package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestFirefoxFaceCheck: the face check in a real headless Firefox, which
// has no FaceDetector at all. Its fake camera shows a plain colour: the
// model (in a worker, as in Chromium) finds no face and the page does not
// queue. Firefox's fake camera cannot show a file, so a second tab's
// camera is shimmed to a canvas showing the face picture (cameraShim);
// that tab queues and meets a Chromium whose fake camera plays the same
// picture. When the shim blanks the canvas mid-call, the re-check warns
// and the Firefox page leaves after the grace; Chromium is told.
func TestFirefoxFaceCheck(t *testing.T) {
	ff := startFirefox(t)
	cr := startBrowser(t, chromedpLoopback(), faceCamera(t, 2))
	d := startDuet(t, faceEnv...)
	url := "http://" + d.addr + "/"

	none := openFirefoxPage(t, ff, "firefox-plain", url)
	shotsOnFailure(t, none)
	none.click("#start-video")
	none.waitTrue(90*time.Second, systemLine("No face in view"))
	if st := evalAs[string](none, `window.duet.state`); st != "idle" {
		t.Fatalf("Firefox without a face is %q, want idle", st)
	}
	checkRanInWorkerOn(t, none)

	fx := openFirefoxPage(t, ff, "firefox-face", url)
	ch := openPage(t, cr, "chromium-face", url)
	shotsOnFailure(t, fx, ch)
	if !evalAs[bool](fx, cameraShim(facePictureURL(t))+"\ntrue") {
		t.Fatal("shim not installed")
	}
	fx.click("#start-video")
	waitStatusOn(fx, "Looking for someone…", 90*time.Second)
	ch.click("#start-video")
	for _, p := range []browserPage{fx, ch} {
		waitStatusOn(p, "Connected", 60*time.Second)
	}
	fx.screenshot("firefox-face-call.png")
	m := string(httpGet(t, "http://"+d.addr+"/metrics", ""))
	if !strings.Contains(m, `duet_face_checks_total{result="face"} 2`) {
		t.Fatalf("the node did not count two queues with a face:\n%s", grepLines(m, "duet_face"))
	}

	evalAs[bool](fx, `window.__faceHidden = true`)
	fx.waitTrue(30*time.Second, systemLine("We can't see your face"))
	fx.waitTrue(60*time.Second, systemLine("your face was not in view"))
	waitStatusOn(ch, "Stranger has disconnected", 15*time.Second)
	m = string(httpGet(t, "http://"+d.addr+"/metrics", ""))
	for _, want := range []string{`duet_face_rechecks_total{event="missing"} 1`, `duet_face_rechecks_total{event="left"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "duet_face"))
		}
	}
}
