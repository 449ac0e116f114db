package wire

import "strings"

// The events of a `shield` message: what the page's nudity shield did
// about the stranger's video in the current room. The node only counts
// them (duet_shield_events_total{event}); no frame, image or score is
// ever sent.
const (
	ShieldBlurred     = "blurred"     // blur-until-safe hid a new stranger's video
	ShieldUnblurred   = "unblurred"   // ...and showed it once frames classified safe
	ShieldDetected    = "detected"    // a frame classified as nudity: blurred at once
	ShieldRevealed    = "revealed"    // the user chose to see a flagged video anyway
	ShieldSkipped     = "skipped"     // the user pressed Next on the shield's prompt
	ShieldUnavailable = "unavailable" // the model cannot run in this browser
	// ShieldReported is counted by the node itself, for a nudity report
	// from a session whose shield flagged that room; a client never
	// sends it.
	ShieldReported = "reported"
)

// ShieldEvents lists every event label, the node's own included.
func ShieldEvents() []string {
	return []string{ShieldBlurred, ShieldUnblurred, ShieldDetected, ShieldRevealed,
		ShieldSkipped, ShieldUnavailable, ShieldReported}
}

// shieldClientEvents are those a client may send.
func shieldClientEvents() []string {
	return []string{ShieldBlurred, ShieldUnblurred, ShieldDetected, ShieldRevealed,
		ShieldSkipped, ShieldUnavailable}
}

// ShieldEvent checks a shield message's event.
func ShieldEvent(e string) *Error {
	for _, ok := range shieldClientEvents() {
		if e == ok {
			return nil
		}
	}
	if e == "" {
		return Errorf(CodeBadRequest, "shield needs an \"event\": one of %s", strings.Join(shieldClientEvents(), ", "))
	}
	return Errorf(CodeBadRequest, "shield: unknown event %q; one of %s", truncateRunes(e, 40), strings.Join(shieldClientEvents(), ", "))
}

// The operator's shield modes (moderation.shield, welcome.features.shield).
const (
	ShieldOff           = "off"
	ShieldBlurUntilSafe = "blur-until-safe"
	ShieldBlurOnDetect  = "blur-on-detect"
)

// ShieldModes lists them.
func ShieldModes() []string { return []string{ShieldOff, ShieldBlurUntilSafe, ShieldBlurOnDetect} }

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
