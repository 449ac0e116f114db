package wire

import "unicode/utf8"

// Report reasons: what `report.reason` may say. The page offers them as
// a short list; the node counts reports by reason.
const (
	ReportNudity     = "nudity" // also what the nudity shield's one-tap report sends
	ReportHarassment = "harassment"
	ReportSpam       = "spam" // spam, ads, a bot
	ReportUnderage   = "underage"
	ReportOther      = "other"
)

// ReportReasons lists the reasons in the order a page offers them.
func ReportReasons() []string {
	return []string{ReportNudity, ReportHarassment, ReportSpam, ReportUnderage, ReportOther}
}

// MaxReasonChars bounds a report's reason, in characters.
const MaxReasonChars = 200

// ReportReason says which reason a report's reason counts as. The list
// came after clients that send their own words: what is not on it (none,
// "inappropriate", free text) counts as other and is still a report; only
// a reason longer than MaxReasonChars is refused.
func ReportReason(r string) (string, bool) {
	switch r {
	case ReportNudity, ReportHarassment, ReportSpam, ReportUnderage, ReportOther:
		return r, true
	}
	if utf8.RuneCountInString(r) > MaxReasonChars {
		return "", false
	}
	return ReportOther, true
}

// CodeLinkHeld refuses a chat holding a link before the strangers have
// talked a while, on a node with signal.chat_links: hold.
const CodeLinkHeld = "link_held"

// LinksPlain is chat.links on a chat whose links came before the
// strangers talked a while (signal.chat_links: plain): show them as
// plain text nobody can click.
const LinksPlain = "plain"
