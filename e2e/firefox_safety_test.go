package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// escapeKey is WebDriver's code point for the Escape key.
const escapeKey = "\uE00C"

// TestFirefoxSafety: the page's safety steps hold in Firefox as they do
// in Chromium (browser_safety_test.go), against a Chromium stranger: the
// house rules and age asked before the first Start, the chat input taking
// focus when the stranger arrives, an early link shown defanged and never
// as a link element, Esc keeping the stranger while a message is being
// typed and doing Next from an empty input, Report asking for a reason,
// and the language picked being kept.
func TestFirefoxSafety(t *testing.T) {
	ff := startFirefox(t)
	cr := browser(t)
	d := startDuet(t, "DUET_SITE_RULES=Be kind. No nudity.", "DUET_SITE_MIN_AGE=18",
		"DUET_MATCHER_AVOID_REPEAT=0s") // the two meet again after Next
	url := "http://" + d.addr + "/"
	fx := openFirefoxPage(t, ff, "firefox", url)
	ch := openUserPage(t, cr, "chromium", url)
	shotsOnFailure(t, fx, ch)

	// The language choice is the page's, kept in the browser. Both pick
	// the same, so it does not keep them apart.
	for _, p := range []browserPage{fx, ch} {
		if !evalAs[bool](p, `(() => { const s = document.querySelector("#lang");
			s.value = "de"; s.dispatchEvent(new Event("change")); return true; })()`) {
			t.Fatalf("%s: no language picker", p.label())
		}
	}
	if got := evalAs[string](fx, `localStorage.getItem("duet.lang")`); got != "de" {
		t.Fatalf("Firefox did not keep the language: %q", got)
	}

	for _, p := range []browserPage{fx, ch} {
		p.click("#start-text")
		p.waitTrue(10*time.Second, `!!document.querySelector("#rules-dialog[open]")`)
		if !strings.Contains(evalAs[string](p, `document.querySelector("#rules-dialog").textContent`), "18 or older") {
			t.Fatalf("%s: the minimum age is not asked", p.label())
		}
		if !evalAs[bool](p, `document.querySelector("#rules-accept").disabled`) {
			t.Fatalf("%s: the rules can be accepted without confirming the age", p.label())
		}
		p.click("#rules-age")
		p.click("#rules-accept")
	}
	for _, p := range []browserPage{fx, ch} {
		waitStatusOn(p, "Connected", 20*time.Second)
	}
	fx.waitTrue(5*time.Second, `document.activeElement && document.activeElement.id === "chat-input"`)

	// An early link reaches Firefox as text nobody can click.
	chatOn(ch, "cheap cams at https://example.com/x now")
	fx.waitTrue(10*time.Second, `!!document.querySelector("#chat-log .stranger .link-plain")`)
	if line := evalAs[string](fx, `document.querySelector("#chat-log .stranger").textContent`); !strings.Contains(line, "https[:]//example[.]com/x") {
		t.Fatalf("Firefox shows %q, want the link defanged", line)
	}
	if n := evalAs[int](fx, `document.querySelectorAll("#chat-log a").length`); n != 0 {
		t.Fatalf("%d link elements in Firefox's chat log", n)
	}

	// Esc while a message is half typed keeps the stranger...
	fx.typeText("#chat-input", "half a sent")
	fx.typeText("#chat-input", escapeKey)
	fx.typeText("#chat-input", "ence")
	fx.click("#chat-send")
	waitChatOn(ch, "half a sentence")
	if s := fx.status(); s != "Connected" {
		t.Fatalf("Esc with text in Firefox's chat input left the room: %q", s)
	}
	// ...and from the empty input it is Next.
	fx.waitTrue(5*time.Second, `document.querySelector("#chat-input").value === ""`)
	fx.typeText("#chat-input", escapeKey)
	waitStatusOn(ch, "Stranger has disconnected", 10*time.Second)

	// They meet again; Report asks for a reason and sends it.
	ch.click("#next")
	for _, p := range []browserPage{fx, ch} {
		waitStatusOn(p, "Connected", 20*time.Second)
	}
	fx.click("#report")
	fx.waitTrue(5*time.Second, `!!document.querySelector("#report-dialog[open]")`)
	if !evalAs[bool](fx, `document.querySelector("#report-send").disabled`) {
		t.Fatal("Firefox can send a report without a reason")
	}
	fx.click(`#report-dialog input[value="spam"]`)
	fx.click("#report-send")
	waitStatusOn(fx, "Looking for someone…", 10*time.Second)
	waitStatusOn(ch, "Stranger has disconnected", 10*time.Second)
	metricLine(t, d, `duet_report_reasons_total{reason="spam"} 1`)

	// They meet again; Firefox blocks the stranger. Both queue again with
	// nothing else keeping them apart, and a third page is matched with
	// one of them while the other still looks.
	ch.click("#next")
	for _, p := range []browserPage{fx, ch} {
		waitStatusOn(p, "Connected", 20*time.Second)
	}
	fx.waitTrue(5*time.Second, `!document.querySelector("#block").disabled`)
	fx.click("#block")
	fx.waitTrue(5*time.Second, `!!document.querySelector("#block-dialog[open]")`)
	fx.click("#block-confirm")
	waitStatusOn(fx, "Looking for someone…", 10*time.Second)
	waitStatusOn(ch, "Stranger has disconnected", 10*time.Second)
	if n := evalAs[int](fx, `JSON.parse(localStorage.getItem("duet.blocked")).length`); n != 1 {
		t.Fatalf("Firefox keeps %d blocked handles, want 1", n)
	}
	ch.click("#next")
	waitStatusOn(ch, "Looking for someone…", 10*time.Second)
	third := openUserPage(t, cr, "third", url)
	shotsOnFailure(t, third)
	third.do(5*time.Second, chromedp.SetValue(chromedp.CSS("#lang"), "de"))
	evalAs[bool](third, `document.querySelector("#lang").dispatchEvent(new Event("change"))`)
	third.click("#start-text")
	third.waitTrue(10*time.Second, `!!document.querySelector("#rules-dialog[open]")`)
	third.click("#rules-age")
	third.click("#rules-accept")
	waitStatusOn(third, "Connected", 20*time.Second)
	// The third page's partner hears `matched` at about the same moment;
	// wait for it, then the other must still be looking.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var in []string
		for _, p := range []browserPage{fx, ch} {
			switch s := p.status(); s {
			case "Connected":
				in = append(in, p.label())
			case "Looking for someone…":
			default:
				t.Fatalf("%s: status %q", p.label(), s)
			}
		}
		if len(in) > 1 {
			t.Fatalf("both of the blocked pair are in rooms: %v", in)
		}
		if len(in) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the third page is connected, but neither of the blocked pair")
		}
		time.Sleep(100 * time.Millisecond) // poll pace, not a condition
	}
}
