package wire

import (
	"strings"
	"unicode/utf8"
)

// SanitizeChat removes what could hide or spoof text in the stranger's
// window: C0/C1 control characters (newline and tab stay) and the bidi
// embedding, override and isolate characters. Everything else, CJK, emoji
// and right-to-left letters included, is kept. The result is trimmed.
func SanitizeChat(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == utf8.RuneError || dropChatRune(r) {
			continue
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

func dropChatRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || (r >= 0x7f && r <= 0x9f):
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
