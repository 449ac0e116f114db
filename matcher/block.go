package matcher

import "slices"

// MaxBlocked bounds a ticket's block list. A list is carried in every
// queue of its owner and checked against every candidate, so it must stay
// small; the browser keeps its newest MaxBlocked and forgets older ones.
const MaxBlocked = 200

// blocked reports whether either of a and b has blocked the other: such
// a pair is never paired, whatever anyone waited (unlike a pair that
// merely met, which avoid-repeat lets meet when nobody else is there).
//
// Blocks ride on the tickets themselves (Self, Blocked), not in the
// store: the browser keeps the list and sends it with each queue, so
// every backend honours it with no state of its own and nothing about a
// block outlives the waiting ticket.
func blocked(a, b Ticket) bool {
	return (a.Self != "" && slices.Contains(b.Blocked, a.Self)) ||
		(b.Self != "" && slices.Contains(a.Blocked, b.Self))
}

// sameLang counts a shared language like one shared interest: a stranger
// who picked a language waits up to the interest timeout for someone
// who picked the same one, then takes anyone.
func sameLang(a, b Ticket) int {
	if a.Lang != "" && a.Lang == b.Lang {
		return 1
	}
	return 0
}
