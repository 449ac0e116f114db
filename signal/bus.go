package signal

import (
	"context"
	"encoding/json"
	"time"

	"github.com/duetchat/duet/matcher"
)

// Bus links the hubs of the nodes that share one Redis store. With it, a
// room's two strangers may sit on different nodes: each node holds its
// own stranger's socket and a proxy for the other, and what one side sends
// the other reaches as an Envelope. A node on its own runs on localBus,
// whose methods do nothing, so the hub never checks for a missing bus.
//
// Publish, Save and Forget must not block: the hub calls them with its
// lock held. Delivery must keep the order of Publish calls per destination
// node, which is what keeps offer, answer and candidates in order.
type Bus interface {
	// Shared reports whether other nodes exist to publish to and resume
	// on; false for a node on its own.
	Shared() bool
	// Node names this process; tickets and records carry it.
	Node() string
	// Publish queues env for node (best effort, ordered per node).
	Publish(node string, env Envelope)
	// Save queues the session's resume record; Forget drops a token's.
	Save(rec Record)
	Forget(token string)
	// Load finds the record a resume token names.
	Load(ctx context.Context, token string) (Record, bool, error)
	// Alive reports whether node still beats.
	Alive(ctx context.Context, node string) (bool, error)
}

// Envelope is one hub-to-hub message.
type Envelope struct {
	Type  string          `json:"t"`
	Room  string          `json:"r,omitempty"`
	From  string          `json:"f,omitempty"` // a session on the sending side
	To    string          `json:"o,omitempty"` // a session on the receiving side
	Node  string          `json:"n,omitempty"` // envMoved: where From lives now
	Match *matcher.Match  `json:"m,omitempty"`
	Side  int             `json:"i,omitempty"` // envMatch: which side the receiver owns
	Frame json.RawMessage `json:"b,omitempty"`
	Code  string          `json:"c,omitempty"`
	Text  string          `json:"x,omitempty"` // error message, or why a room ended
	Ref   string          `json:"e,omitempty"`
}

// Envelope types.
const (
	envPair     = "pair"     // a claimed pair whose two sides both live on the receiver
	envMatch    = "match"    // a claimed pair split over two nodes: take your side
	envAccept   = "accept"   // my side is live and holds the room open
	envGone     = "gone"     // my side left the room, or never took it
	envFrame    = "frame"    // deliver Frame to To
	envSignal   = "signal"   // offer/answer/candidate for To, held until To is ready
	envError    = "error"    // an error for To about what it sent
	envMoved    = "moved"    // From resumed on Node
	envTakeover = "takeover" // From resumed elsewhere: let it go quietly
	envFallback = "fallback" // From asked for the SFU; the room's SFU lives on side 0's node
	envSFU      = "sfu"      // the room is on the SFU of Node now
	envSFUSig   = "sfu_sig"  // From's answer or candidate (Ref) for the SFU, Frame its JSON
	envBan      = "ban"      // To is banned; Frame is the ban's JSON
)

// Record is what a node keeps in the store so that a session can resume on
// any node, even after its own node died.
type Record struct {
	ID        string
	Token     string
	Node      string
	State     string      // idle | waiting | room
	Mode      string      `json:",omitempty"`
	Interests []string    `json:",omitempty"`
	Lang      string      `json:",omitempty"`
	Room      *RoomRecord `json:",omitempty"`
	// Self and Blocked are the session's block identity and list.
	Self    string   `json:",omitempty"`
	Blocked []string `json:",omitempty"`
	// Urgent is not stored: the session has no socket, so it may resume
	// on another node at once, or it has just entered a room, which a
	// resume after this node dies must find (the stranger's side lives
	// on). A Bus may hold other records for a few milliseconds so that a
	// newer one of the same session replaces them; an urgent one it
	// writes without waiting.
	Urgent bool `json:"-"`
}

// RoomRecord is a session's view of its room.
type RoomRecord struct {
	Code     string
	Mode     string
	Common   []string
	Started  time.Time
	Index    int // 0 offers, 1 answers
	PeerID   string
	PeerNode string
	PeerIP   string `json:",omitempty"` // the stranger's address hash
	PeerSelf string `json:",omitempty"` // the stranger's block identity
}

// localBus is the Bus of a node on its own: there is nobody to publish
// to, save for or look up, so every method does nothing, and a node's
// name is empty, as the memory store's tickets carry no node.
type localBus struct{}

func (localBus) Shared() bool             { return false }
func (localBus) Node() string             { return "" }
func (localBus) Publish(string, Envelope) {}
func (localBus) Save(Record)              {}
func (localBus) Forget(string)            {}
func (localBus) Load(context.Context, string) (Record, bool, error) {
	return Record{}, false, nil
}
func (localBus) Alive(context.Context, string) (bool, error) { return true, nil }
