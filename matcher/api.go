// Package matcher pairs waiting strangers: per-mode queues, interest
// preference with a timeout, random choice among the eligible, an
// avoid-repeat window, and unguessable room codes.
//
// The pairing rules live in Matcher and are the same for every backend;
// backends implement Store, whose Claim is the one atomic step that makes
// double matches impossible even with several matcher workers.
package matcher

import (
	"context"
	"errors"
	"time"
)

// Modes a stranger can queue for.
const (
	ModeVideo = "video"
	ModeText  = "text"
)

// ValidMode reports whether m is a mode the matcher knows.
func ValidMode(m string) bool { return m == ModeVideo || m == ModeText }

// Ticket is one waiting session.
type Ticket struct {
	Session   string
	Mode      string
	Interests []string // normalised: lower case, trimmed, unique, never nil
	// Lang, when set, is preferred like an interest: strangers who chose
	// the same language are paired first (see sameLang).
	Lang     string `json:",omitempty"`
	JoinedAt time.Time
	// Node is the node whose socket holds the session; a shared store
	// fills it so a match can be routed to both owners ("" = this node).
	Node string `json:",omitempty"`
	// IPHash is the owner's salted address hash: a report against the
	// session on another node can ban its address too.
	IPHash string `json:",omitempty"`
	// Self is the owner's block identity (an opaque ID the signal layer
	// derives; "" = none) and Blocked the identities it never wants to
	// meet (at most MaxBlocked): the matcher never pairs two tickets when
	// either's Blocked holds the other's Self.
	Self    string   `json:",omitempty"`
	Blocked []string `json:",omitempty"`
	// SoleMode is the caller's word that no ticket of this session was
	// ever queued in another mode, by this node or any other: a shared
	// store then need not look for one in the other modes' queues (a
	// command per mode per join). When in doubt (the mode changed, the
	// session came from another node) leave it false. Never stored.
	SoleMode bool `json:"-"`
}

// Match is a pair the matcher claimed. A is the offerer, B the answerer.
type Match struct {
	Room   string
	Mode   string
	A, B   Ticket
	Common []string // shared interests, sorted, never nil
	At     time.Time
}

var (
	// ErrAlreadyWaiting: the session already has a ticket.
	ErrAlreadyWaiting = errors.New("matcher: session already waiting")
	// ErrNotWaiting: a claim named a session that has left the queue.
	ErrNotWaiting = errors.New("matcher: session not waiting")
	// ErrNotLeader: Waiting of a shared store whose pairing lease another
	// node holds; that node pairs, this one skips its pass.
	ErrNotLeader = errors.New("matcher: another node holds the pairing lease")
)

// Store is the state seam: the memory implementation here, a Redis one
// beside it. Implementations must be safe for concurrent use.
type Store interface {
	// Add queues t; ErrAlreadyWaiting if t.Session already has a ticket.
	Add(ctx context.Context, t Ticket) error
	// Remove drops the session's ticket; reports whether it had one.
	Remove(ctx context.Context, session string) (bool, error)
	// Waiting returns the tickets of one mode (a snapshot; order
	// unspecified). A shared store may answer from its own copy, which
	// can be a moment behind: Claim is what decides.
	Waiting(ctx context.Context, mode string) ([]Ticket, error)
	// Claim atomically removes both tickets if both are still waiting and
	// records that a and b met (for avoid-repeat, until metUntil; now is
	// the matcher's clock, so a store with its own expiry can use
	// metUntil-now); ErrNotWaiting (and no change) otherwise.
	Claim(ctx context.Context, a, b string, now, metUntil time.Time) error
	// Met reports whether a and b met recently (before now < metUntil).
	Met(ctx context.Context, a, b string, now time.Time) (bool, error)
	// Counts returns the number waiting per mode.
	Counts(ctx context.Context) (map[string]int, error)
}

// BatchClaimer is implemented by stores where a round trip costs more
// than the claim itself: a pass then claims all its pairs at once. Each
// result is what Claim would have returned for that pair.
type BatchClaimer interface {
	ClaimBatch(ctx context.Context, pairs [][2]string, now, metUntil time.Time) []error
}

// Waker is implemented by stores shared between nodes: a Join on one node
// must wake the matcher that pairs, not wait for a timer. Such a store's
// Add announces the new ticket itself (in the same round trip).
type Waker interface {
	// Wakes starts following those announcements and delivers a wake-up
	// (coalesced) whenever a pass has something new to look at, until
	// ctx ends.
	Wakes(ctx context.Context) <-chan struct{}
}

// BatchNotifier is a Notifier that also takes all the matches of a pass
// at once.
type BatchNotifier interface {
	Notifier
	MatchedAll(ms []Match)
}

// Notifier receives every claimed match. It is called from the matcher's
// own goroutine and must not block for long.
type Notifier interface {
	Matched(m Match)
}
