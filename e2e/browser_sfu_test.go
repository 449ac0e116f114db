package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserSFU: with sfu.mode always two Chromium pages get each other's
// video through the node's SFU; then, on a node whose P2P budget is too
// short to ever connect, the pages ask for the fallback by themselves and
// end up on the SFU too. The admin API shows the room on the sfu path with
// bytes both ways.
func TestBrowserSFU(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"always", []string{"DUET_SFU_MODE=always"}},
		// 1 ms: no P2P connection makes it, so the client falls back on its
		// own (the timeout path of the automatic fallback).
		{"automatic fallback", []string{"DUET_SIGNAL_P2P_TIMEOUT=1ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := browser(t)
			d := startDuet(t, append(tc.env, "DUET_ADMIN_TOKEN=sfu-admin")...)
			a := openPage(t, ctx, "A", "http://"+d.addr+"/")
			b := openPage(t, ctx, "B", "http://"+d.addr+"/")
			a.click("#start-video")
			a.waitStatus("Looking for someone…", 15*time.Second)
			b.click("#start-video")
			for _, p := range []*page{a, b} {
				p.waitStatus("Connected", 30*time.Second)
				p.waitTrue(20*time.Second, `document.querySelector("#path").textContent === "Relay via server"`)
				p.waitMediaFlowing()
			}
			a.chat("over the SFU")
			b.waitChatFromStranger("over the SFU")
			room := evalOn[string](a, `window.duet.room`)
			body := httpGet(t, "http://"+d.addr+"/api/rooms/"+room, "sfu-admin")
			var v struct {
				Path string `json:"path"`
				AToB struct {
					Bytes uint64 `json:"bytes"`
				} `json:"a_to_b"`
				BToA struct {
					Bytes uint64 `json:"bytes"`
				} `json:"b_to_a"`
			}
			if err := json.Unmarshal(body, &v); err != nil || v.Path != "sfu" || v.AToB.Bytes == 0 || v.BToA.Bytes == 0 {
				t.Fatalf("admin room: %s (%v)", body, err)
			}
			// Chromium answers active, so the node is the DTLS server of
			// both UDP legs and its shortcut forwards the media.
			checkShortcut(t, func() float64 { return metricValue(t, d.addr, shortcutSeries) }, 0, true)
			a.screenshot("sfu-" + strings.ReplaceAll(tc.name, " ", "-") + ".png")

			// The live admin page shows the room on the SFU with its bitrate.
			admin := openAdmin(t, ctx, "http://"+d.addr+"/admin", "sfu-admin")
			admin.waitTrue(15*time.Second, `(() => {
				const row = document.getElementById("room-`+room+`");
				return !!row && row.children[2].textContent === "sfu" && /[0-9.]+ [kM]b\/s/.test(row.children[4].textContent);
			})()`)
			admin.screenshot("admin-" + strings.ReplaceAll(tc.name, " ", "-") + ".png")
		})
	}
}

// openAdmin opens the live rooms page and signs in with token.
func openAdmin(t *testing.T, ctx context.Context, url, token string) *page {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("admin: opening tab: %v", err)
	}
	p := &page{t: t, name: "admin", ctx: tab}
	p.do(30*time.Second, chromedp.Navigate(url))
	p.do(10*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#auth button")))
	return p
}
