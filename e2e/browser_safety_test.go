package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// openUserPage is openPage in a browser context of its own: its own
// localStorage, so each page is another person (their own block token,
// block list, accepted rules), as separate browsers would be.
func openUserPage(t *testing.T, browserCtx context.Context, name, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: opening a browser context: %v", name, err)
	}
	p := &page{t: t, name: name, ctx: ctx}
	p.do(30*time.Second, chromedp.Navigate(url))
	p.waitLoaded()
	return p
}

func (p *page) waitLoaded() {
	p.t.Helper()
	p.waitTrue(10*time.Second, `typeof window.duet === "object" && !!window.duet.session`)
}

func (p *page) reload() {
	p.t.Helper()
	p.do(30*time.Second, chromedp.Reload())
	p.waitLoaded()
}

// setInterests types interests into the (idle) page's field.
func (p *page) setInterests(s string) {
	p.t.Helper()
	p.do(5*time.Second, chromedp.SetValue(chromedp.CSS("#interests"), s))
}

// key sends one key press to whatever has focus.
func (p *page) key(k string) {
	p.t.Helper()
	p.do(5*time.Second, chromedp.KeyEvent(k))
}

func (p *page) systemLine(sub string) {
	p.t.Helper()
	p.waitTrue(10*time.Second, `[...document.querySelectorAll("#chat-log .system")].some(e => e.textContent.includes(`+jsString(sub)+`))`)
}

func (p *page) focusedID() string {
	return evalOn[string](p, `document.activeElement ? document.activeElement.id : ""`)
}

// startBoth starts text chat on two idle pages and waits for them to meet.
func startBoth(a, b *page) {
	a.t.Helper()
	a.click("#start-text")
	b.click("#start-text")
	a.waitStatus("Connected", 15*time.Second)
	b.waitStatus("Connected", 15*time.Second)
}

func metricLine(t *testing.T, d *duet, want string) {
	t.Helper()
	if m := string(httpGet(t, "http://"+d.addr+"/metrics", "")); !strings.Contains(m, want) {
		t.Fatalf("/metrics lacks %s:\n%s", want, grepLines(m, strings.SplitN(want, "{", 2)[0]))
	}
}

// TestBrowserRulesAndReport: the house rules and minimum age are asked
// once, before the first Start, and not again after a reload; Report asks
// for a reason, can be cancelled, and sends the reason; the chat input
// takes focus when a stranger arrives.
func TestBrowserRulesAndReport(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, "DUET_SITE_RULES=Be kind. No nudity.", "DUET_SITE_MIN_AGE=18")
	url := "http://" + d.addr + "/"
	a := openUserPage(t, ctx, "A", url)
	b := openUserPage(t, ctx, "B", url)

	a.click("#start-text")
	a.waitTrue(10*time.Second, `!!document.querySelector("#rules-dialog[open]")`)
	if got := evalOn[string](a, `document.querySelector("#rules-text").textContent`); got != "Be kind. No nudity." {
		t.Fatalf("rules shown: %q", got)
	}
	if !strings.Contains(evalOn[string](a, `document.querySelector("#rules-dialog").textContent`), "18 or older") {
		t.Fatal("the minimum age is not asked")
	}
	if !evalOn[bool](a, `document.querySelector("#rules-accept").disabled`) {
		t.Fatal("the rules can be accepted without confirming the age")
	}
	a.click("#rules-decline")
	a.waitTrue(5*time.Second, `!document.querySelector("#rules-dialog")`)
	if s := a.status(); s != "Press Start to meet someone" || evalOn[string](a, `window.duet.state`) != "idle" {
		t.Fatalf("declining the rules queued anyway: status %q", s)
	}
	for _, p := range []*page{a, b} {
		p.click("#start-text")
		p.waitTrue(10*time.Second, `!!document.querySelector("#rules-dialog[open]")`)
		p.click("#rules-age")
		p.click("#rules-accept")
	}
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 15*time.Second)
		p.waitTrue(5*time.Second, `document.activeElement && document.activeElement.id === "chat-input"`)
	}

	// Report: a reason must be picked; Cancel keeps the room.
	a.click("#report")
	a.waitTrue(5*time.Second, `!!document.querySelector("#report-dialog[open]")`)
	reasons := evalOn[string](a, `[...document.querySelectorAll("#report-dialog input[type=radio]")].map(r => r.value).join(",")`)
	if reasons != "nudity,harassment,spam,underage,other" {
		t.Fatalf("report reasons offered: %q", reasons)
	}
	if !evalOn[bool](a, `document.querySelector("#report-send").disabled`) {
		t.Fatal("a report can be sent without a reason")
	}
	a.click("#report-dialog-cancel")
	a.waitTrue(5*time.Second, `!document.querySelector("#report-dialog")`)
	a.chat("still here")
	b.waitChatFromStranger("still here")
	a.click("#report")
	a.waitTrue(5*time.Second, `!!document.querySelector("#report-dialog[open]")`)
	a.click(`#report-dialog input[value="harassment"]`)
	a.click("#report-send")
	a.waitStatus("Looking for someone…", 10*time.Second)
	b.waitStatus("Stranger has disconnected", 10*time.Second)
	metricLine(t, d, `duet_report_reasons_total{reason="harassment"} 1`)

	// Accepted once: not asked again after a reload.
	a.click("#stop")
	a.waitStatus("Press Start to meet someone", 10*time.Second)
	a.reload()
	a.click("#start-text")
	a.waitStatus("Looking for someone…", 10*time.Second)
	if evalOn[bool](a, `!!document.querySelector("#rules-dialog")`) {
		t.Fatal("the rules were asked again after a reload")
	}
}

// TestBrowserEscAndLanguage: Esc does Next, but not from a field with
// text in it; the language picked is what the node matches on.
func TestBrowserEscAndLanguage(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, "DUET_MATCHER_AVOID_REPEAT=0s") // A and B meet twice
	url := "http://" + d.addr + "/"
	a, b, c := openUserPage(t, ctx, "A", url), openUserPage(t, ctx, "B", url), openUserPage(t, ctx, "C", url)
	pick := func(p *page, lang string) {
		p.do(5*time.Second, chromedp.SetValue(chromedp.CSS("#lang"), lang))
		evalOn[bool](p, `document.querySelector("#lang").dispatchEvent(new Event("change"))`)
	}
	// C (French) waits; A (German) does not take C; B (German) meets A.
	pick(c, "fr")
	c.click("#start-text")
	c.waitStatus("Looking for someone…", 10*time.Second)
	pick(a, "de")
	a.click("#start-text")
	a.waitStatus("Looking for someone…", 10*time.Second)
	pick(b, "de")
	b.click("#start-text")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 15*time.Second)
	}
	if s := c.status(); s != "Looking for someone…" {
		t.Fatalf("C (French) status %q while the German speakers met", s)
	}
	if got := evalOn[string](a, `localStorage.getItem("duet.lang")`); got != "de" {
		t.Fatalf("the language choice is not kept: %q", got)
	}

	// Esc while typing a message keeps the stranger.
	a.waitTrue(5*time.Second, `document.activeElement.id === "chat-input"`)
	a.do(5*time.Second, chromedp.SendKeys(chromedp.CSS("#chat-input"), "half a sent"))
	a.key(kb.Escape)
	a.chat("ence")
	b.waitChatFromStranger("half a sentence")
	if s := a.status(); s != "Connected" {
		t.Fatalf("Esc with text in the chat input left the room: %q", s)
	}
	// From an empty input, Esc is Next. (Send keeps the focus there.)
	a.waitTrue(5*time.Second, `document.activeElement.id === "chat-input" && document.activeElement.value === ""`)
	a.key(kb.Escape)
	b.waitStatus("Stranger has disconnected", 10*time.Second)
	if s := a.status(); s != "Looking for someone…" && s != "Connected" {
		t.Fatalf("after Esc A's status is %q", s)
	}
	// And from the page itself (nothing focused).
	b.click("#next")
	b.waitTrue(15*time.Second, `window.duet.state === "room"`)
	evalOn[bool](b, `(document.activeElement.blur(), true)`)
	b.key(kb.Escape)
	b.waitTrue(10*time.Second, `window.duet.state !== "room"`)
}

// TestBrowserChatLinks: with signal.chat_links: plain, a link in early chat
// reaches the stranger as defanged text, never a link element; with hold
// it does not reach them and the sender is told. The page's link finder
// agrees with the node's on the shared table.
func TestBrowserChatLinks(t *testing.T) {
	ctx := browser(t)
	plain := startDuetAs(t, "plain") // the default
	hold := startDuetAs(t, "hold", "DUET_SIGNAL_CHAT_LINKS=hold")

	a := openUserPage(t, ctx, "A", "http://"+plain.addr+"/")
	b := openUserPage(t, ctx, "B", "http://"+plain.addr+"/")

	raw, err := os.ReadFile("../internal/chatlink/testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text string `json:"text"`
		Link bool   `json:"link"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	got := evalOn[[]bool](a, `import("/links.js").then(m => `+string(raw)+`.map(c => m.hasLink(c.text)))`)
	for i, c := range cases {
		if got[i] != c.Link {
			t.Errorf("links.js: hasLink(%q) = %v, the node says %v", c.Text, got[i], c.Link)
		}
	}

	startBoth(a, b)
	a.chat("cheap cams at https://example.com/x now")
	b.waitTrue(10*time.Second, `!!document.querySelector("#chat-log .stranger .link-plain")`)
	line := evalOn[string](b, `document.querySelector("#chat-log .stranger").textContent`)
	if !strings.Contains(line, "https[:]//example[.]com/x") {
		t.Fatalf("B sees %q, want the link defanged", line)
	}
	if n := evalOn[int](b, `document.querySelectorAll("#chat-log a").length`); n != 0 {
		t.Fatalf("%d link elements in the chat log", n)
	}
	a.chat("no link at all.")
	b.waitChatFromStranger("no link at all.")
	if n := evalOn[int](b, `document.querySelectorAll("#chat-log .link-plain").length`); n != 1 {
		t.Fatalf("%d defanged spans, want only the one link", n)
	}

	c := openUserPage(t, ctx, "C", "http://"+hold.addr+"/")
	e := openUserPage(t, ctx, "E", "http://"+hold.addr+"/")
	startBoth(c, e)
	c.chat("join t.me/freestuff")
	c.systemLine("Links can be sent")
	c.chat("hello")
	e.waitChatFromStranger("hello")
	if strings.Contains(evalOn[string](e, `document.querySelector("#chat-log").textContent`), "freestuff") {
		t.Fatal("a held link reached the stranger")
	}
	metricLine(t, hold, `duet_errors_total{code="link_held"} 1`)
}

// TestBrowserBlock: A blocks B; both queue again, again and again, and are
// never matched with each other, while a third page is matched with
// each of them in turn. The block outlives a reload.
func TestBrowserBlock(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, "DUET_MATCHER_AVOID_REPEAT=0s") // only the block keeps them apart
	url := "http://" + d.addr + "/"
	a, b, c := openUserPage(t, ctx, "A", url), openUserPage(t, ctx, "B", url), openUserPage(t, ctx, "C", url)
	// A and B share an interest, so without the block they would meet at
	// once; C shares one with A (x) or B (y), chosen per round.
	a.setInterests("ab, x")
	b.setInterests("ab, y")
	for _, p := range []*page{a, b} {
		p.click("#start-text")
	}
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 15*time.Second)
	}
	a.waitTrue(5*time.Second, `!document.querySelector("#block").disabled`)
	a.click("#block")
	a.waitTrue(5*time.Second, `!!document.querySelector("#block-dialog[open]")`)
	a.click("#block-confirm")
	a.waitStatus("Looking for someone…", 10*time.Second)
	b.waitStatus("Stranger has disconnected", 10*time.Second)
	if n := evalOn[int](a, `JSON.parse(localStorage.getItem("duet.blocked")).length`); n != 1 {
		t.Fatalf("A keeps %d blocked handles, want 1", n)
	}
	b.click("#next")
	b.waitStatus("Looking for someone…", 10*time.Second)

	for round := range 4 {
		partner, other, interest := a, b, "x"
		if round%2 == 1 {
			partner, other, interest = b, a, "y"
		}
		if round == 2 {
			a.click("#stop") // A leaves, reloads and comes back
			a.waitStatus("Press Start to meet someone", 10*time.Second)
			a.reload()
			a.setInterests("ab, x")
			a.click("#start-text")
			a.waitStatus("Looking for someone…", 10*time.Second)
		}
		c.setInterests(interest)
		c.click("#start-text")
		c.waitStatus("Connected", 15*time.Second)
		partner.waitStatus("Connected", 15*time.Second)
		c.chat("round " + interest)
		partner.waitChatFromStranger("round " + interest)
		if s := other.status(); s != "Looking for someone…" {
			t.Fatalf("round %d: %s's status %q, want still looking", round, other.name, s)
		}
		c.click("#stop")
		c.waitStatus("Press Start to meet someone", 10*time.Second)
		partner.waitStatus("Stranger has disconnected", 10*time.Second)
		partner.click("#next")
		partner.waitStatus("Looking for someone…", 10*time.Second)
	}
}
