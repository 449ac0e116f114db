package wire

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

// ReportReason checks a report's reason and says which one it counts as.
// An absent reason and "inappropriate" (what pages before the list sent)
// count as other; anything else not on the list is refused.
func ReportReason(r string) (string, bool) {
	switch r {
	case "", "inappropriate":
		return ReportOther, true
	case ReportNudity, ReportHarassment, ReportSpam, ReportUnderage, ReportOther:
		return r, true
	}
	return "", false
}

// CodeLinkHeld refuses a chat holding a link before the strangers have
// talked a while, on a node with signal.chat_links: hold.
const CodeLinkHeld = "link_held"

// LinksPlain is chat.links on a chat whose links came before the
// strangers talked a while (signal.chat_links: plain): show them as
// plain text nobody can click.
const LinksPlain = "plain"
