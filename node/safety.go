package node

import (
	"net/http"
	"strconv"

	"github.com/duetchat/duet/wire"
)

// SiteInfo is GET /api/site: what the page shows a newcomer and offers
// in its safety controls. Public, like the page itself.
type SiteInfo struct {
	Rules         string   `json:"rules"`
	MinAge        int      `json:"min_age"`
	ReportReasons []string `json:"report_reasons"`
	// ChatLinks and the two thresholds say how links in early chat are
	// treated (signal.chat_links), so a page can explain it.
	ChatLinks              string `json:"chat_links"`
	ChatLinksAfterMS       int64  `json:"chat_links_after_ms"`
	ChatLinksAfterMessages int    `json:"chat_links_after_messages"`
}

func (n *Node) site(w http.ResponseWriter, _ *http.Request) {
	s := n.cfg.Signal
	writeJSON(w, http.StatusOK, SiteInfo{
		Rules: n.cfg.Site.Rules, MinAge: n.cfg.Site.MinAge, ReportReasons: wire.ReportReasons(),
		ChatLinks: s.ChatLinks, ChatLinksAfterMS: s.ChatLinksAfter.Milliseconds(),
		ChatLinksAfterMessages: s.ChatLinksAfterMessages,
	})
}

// SafetyFeature is one row of GET /api/safety (admin): whether a safety
// feature is on, the key that turns it on, where it runs and what of it
// reaches the node. The admin page shows them as a table.
type SafetyFeature struct {
	Feature string `json:"feature"`
	On      bool   `json:"on"`
	Setting string `json:"setting"` // the current value, in words
	Key     string `json:"key"`     // the config key(s) that turn it on
	Runs    string `json:"runs"`
	Sends   string `json:"sends"`
}

// safetyFeatures lists every safety feature; a feature added later adds
// its row here.
func (n *Node) safetyFeatures() []SafetyFeature {
	c := n.cfg
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	links := c.Signal.ChatLinks
	if links != "allow" {
		links += " until " + c.Signal.ChatLinksAfter.String()
		if m := c.Signal.ChatLinksAfterMessages; m > 0 {
			links += " and " + strconv.Itoa(m) + " messages each"
		}
	}
	rules := "none"
	if c.Site.Rules != "" || c.Site.MinAge > 0 {
		rules = "shown once before the first Start"
		if c.Site.MinAge > 0 {
			rules += ", minimum age " + strconv.Itoa(c.Site.MinAge)
		}
	}
	return []SafetyFeature{
		{Feature: "face check", On: c.Signal.FaceCheck, Setting: onOff(c.Signal.FaceCheck), Key: "signal.face_check",
			Runs: "browser (own camera)", Sends: "yes/no per video queue, and missing/back/left during a call; counted in duet_face_checks_total and duet_face_rechecks_total"},
		{Feature: "nudity shield", On: c.Moderation.Shield != "off", Setting: c.Moderation.Shield + " (users may change it for themselves)",
			Key:  "moderation.shield, moderation.shield_reports_to_ban",
			Runs: "browser (the stranger's video, classified on the device)", Sends: "event names only; counted in duet_shield_events_total{event}"},
		{Feature: "proof of work", On: c.Bots.POW, Setting: onOff(c.Bots.POW), Key: "bots.pow, bots.pow_key",
			Runs: "browser solves, node verifies", Sends: "the solution with queue/next"},
		{Feature: "links in chat", On: c.Signal.ChatLinks != "allow", Setting: links,
			Key:  "signal.chat_links, signal.chat_links_after, signal.chat_links_after_messages",
			Runs: "node (checks each chat)", Sends: "nothing new; held chats counted in duet_errors_total{code=\"link_held\"}"},
		{Feature: "block", On: true, Setting: "always on", Key: "(none)",
			Runs: "browser keeps the list, node's matcher honours it", Sends: "a random browser token and opaque block handles with queue/next"},
		{Feature: "house rules", On: rules != "none", Setting: rules, Key: "site.rules, site.min_age",
			Runs: "browser (acceptance kept in the browser)", Sends: "nothing"},
		{Feature: "report reasons", On: true, Setting: "always on", Key: "(none)",
			Runs: "browser asks, node records", Sends: "the reason; counted in duet_report_reasons_total{reason}"},
	}
}

func (n *Node) safety(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"features": n.safetyFeatures()})
}
