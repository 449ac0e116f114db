package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestBrowserFaceCheck: with signal.face_check on, a real Chromium checks
// its own (fake) camera before a video queue. The fake camera shows no
// face; where Chromium has no face detector (Linux) the page says so
// plainly and queues anyway; where it has one it finds no face and does
// not queue. Either way the node learns only the yes/no.
func TestBrowserFaceCheck(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, "DUET_SIGNAL_FACE_CHECK=true")
	a := openPage(t, ctx, "A", "http://"+d.addr+"/")
	a.click("#start-video")
	a.waitTrue(15*time.Second, `[...document.querySelectorAll("#chat-log .system")].some(e => e.textContent.includes("face"))`)
	line := evalOn[string](a, `[...document.querySelectorAll("#chat-log .system")].map(e => e.textContent).find(t => t.includes("face"))`)
	metrics := func() string { return string(httpGet(t, "http://"+d.addr+"/metrics", "")) }
	switch {
	case strings.Contains(line, "no face detector"):
		a.waitStatus("Looking for someone…", 10*time.Second)
		if m := metrics(); !strings.Contains(m, `duet_face_checks_total{result="no_detector"} 1`) {
			t.Fatalf("the node did not count a queue without a detector:\n%s", grepLines(m, "duet_face"))
		}
	case strings.Contains(line, "No face in view"):
		if s := a.status(); strings.Contains(s, "Looking") {
			t.Fatalf("queued without a face: status %q", s)
		}
	default:
		t.Fatalf("face check line %q", line)
	}
	t.Logf("face check in this Chromium: %q", line)
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
