// Package wire is duet's signalling protocol as Go values: the message
// type names and error codes of docs/PROTOCOL.md, the client messages the
// node decodes (with a fast path for the frames browsers send), the
// messages it sends, and the chat sanitiser. The node, duet-bench,
// e2e/testpeer and the tests all speak it through this package.
package wire

import (
	"encoding/json"
	"fmt"
)

// ProtocolVersion is the `welcome.protocol` this node speaks.
const ProtocolVersion = 1

// Message types a client sends.
const (
	TypeQueue     = "queue"
	TypeCancel    = "cancel"
	TypeReady     = "ready"
	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypeChat      = "chat"
	TypeTyping    = "typing"
	TypeNext      = "next"
	TypeLeave     = "leave"
	TypeReport    = "report"
	TypeFallback  = "fallback"
	// TypeShield counts what the page's nudity shield did (event: one of
	// ShieldEvents); only counted.
	TypeShield = "shield"
	// TypeFace reports what the page's face re-check during a call saw
	// (reason: FaceMissing, FaceBack or FaceLeft); only counted.
	TypeFace = "face"
)

// The reasons of a `face` message.
const (
	FaceMissing = "missing"
	FaceBack    = "back"
	FaceLeft    = "left"
)

// Message types only the node sends (offer, answer, candidate, chat and
// typing go both ways).
const (
	TypeWelcome          = "welcome"
	TypeQueued           = "queued"
	TypeIdle             = "idle"
	TypeMatched          = "matched"
	TypeMedia            = "media"
	TypePeerReconnecting = "peer_reconnecting"
	TypePeerResumed      = "peer_resumed"
	TypePeerLeft         = "peer_left"
	TypeError            = "error"
)

// ClientTypes lists the types a client may send; it bounds the label set
// of the node's per-type message counter.
func ClientTypes() []string {
	return []string{TypeQueue, TypeCancel, TypeReady, TypeOffer, TypeAnswer,
		TypeCandidate, TypeChat, TypeTyping, TypeNext, TypeLeave, TypeReport, TypeFallback, TypeShield, TypeFace}
}

// IsClientType says whether t is a type a client may send.
func IsClientType(t string) bool {
	switch t {
	case TypeQueue, TypeCancel, TypeReady, TypeOffer, TypeAnswer,
		TypeCandidate, TypeChat, TypeTyping, TypeNext, TypeLeave, TypeReport, TypeFallback, TypeShield, TypeFace:
		return true
	}
	return false
}

// Error codes, fixed by the protocol contract.
const (
	CodeBadJSON     = "bad_json"
	CodeBadRequest  = "bad_request"
	CodeUnknownType = "unknown_type"
	CodeTooLarge    = "too_large"
	CodeRateLimited = "rate_limited"
	CodeWrongState  = "wrong_state"
	CodeNotInRoom   = "not_in_room"
	CodeBanned      = "banned"
	CodeUnavailable = "unavailable"
	CodeInternal    = "internal"
	// CodePOWRequired and CodePOWInvalid refuse a join (queue, next) on a
	// node that asks for proof of work: none was sent and the session
	// has no pass, or what was sent is not a good solution.
	CodePOWRequired = "pow_required"
	CodePOWInvalid  = "pow_invalid"
)

// Codes lists every error code.
func Codes() []string {
	return []string{CodeBadJSON, CodeBadRequest, CodeUnknownType, CodeTooLarge,
		CodeRateLimited, CodeWrongState, CodeNotInRoom, CodeBanned, CodeUnavailable, CodeInternal, CodeLinkHeld}
}

// Peer-left reasons.
const (
	ReasonNext         = "next"
	ReasonLeave        = "leave"
	ReasonDisconnected = "disconnected"
	ReasonReported     = "reported"
	ReasonBanned       = "banned"
)

// Values of fixed-set fields.
const (
	ModeVideo    = "video"
	ModeText     = "text"
	LegSFU       = "sfu" // offer/answer/candidate from or to the node's SFU
	MediaP2P     = "p2p" // matched.media: peer to peer
	MediaSFU     = "sfu" // matched.media and media.mode: through the SFU
	RoleOfferer  = "offerer"
	RoleAnswerer = "answerer"
)

// Outbound messages. Slices are always non-nil so they encode as [].

// ICEServer is one RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Features is welcome.features.
type Features struct {
	SFU  bool `json:"sfu"`
	TURN bool `json:"turn"`
	Text bool `json:"text"`
	// FaceCheck: look for a face in your own camera before a video queue
	// and send the answer as queue.face.
	FaceCheck bool `json:"face_check"`
	// Shield is the operator's default for the page's nudity shield:
	// off, blur-until-safe or blur-on-detect (moderation.shield).
	Shield string `json:"shield"`
	// FaceRecheck, with FaceCheck, has the page look again during video
	// calls; absent, it looks only before a queue.
	FaceRecheck *FaceRecheck `json:"face_recheck,omitempty"`
	// POW: a join needs a solved proof-of-work challenge (queue.pow)
	// or a pass bought by one.
	POW bool `json:"pow"`
}

// FaceRecheck is welcome.features.face_recheck: look every IntervalMS
// during a video call; when the face is gone, Missing says what to do:
// "warn", or "leave" the room after GraceMS without a face.
type FaceRecheck struct {
	IntervalMS int64  `json:"interval_ms"`
	Missing    string `json:"missing"`
	GraceMS    int64  `json:"grace_ms"`
}

// WelcomeMsg is always the first frame on a socket.
type WelcomeMsg struct {
	Type     string   `json:"type"`
	Protocol int      `json:"protocol"`
	Session  string   `json:"session"`
	Token    string   `json:"token"`
	Features Features `json:"features"`
	Online   int      `json:"online"`
	Resumed  bool     `json:"resumed"`
}

// MatchedMsg tells a session it has a stranger.
type MatchedMsg struct {
	Type            string      `json:"type"`
	Room            string      `json:"room"`
	Role            string      `json:"role"`
	Mode            string      `json:"mode"`
	CommonInterests []string    `json:"common_interests"`
	ICEServers      []ICEServer `json:"ice_servers"`
	Media           string      `json:"media"`
	P2PTimeoutMS    int64       `json:"p2p_timeout_ms"`
	// ICETransportPolicy is RTCConfiguration.iceTransportPolicy for video
	// rooms: "relay" in privacy mode (turn.mode: always), else "all".
	ICETransportPolicy string `json:"ice_transport_policy,omitempty"`
	// Block is an opaque handle for this stranger, new at every meeting:
	// sent back in queue.blocked, the two are never matched again.
	Block string `json:"block,omitempty"`
}

// SDPMsg is an offer or an answer.
type SDPMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	SDP  string `json:"sdp"`
	Leg  string `json:"leg,omitempty"`
}

// CandidateMsg is one trickled candidate; a nil Candidate ends them.
type CandidateMsg struct {
	Type      string        `json:"type"`
	Room      string        `json:"room"`
	Candidate *ICECandidate `json:"candidate"`
	Leg       string        `json:"leg,omitempty"`
}

// ChatMsg is the stranger's chat, stamped with the node's time.
type ChatMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Text string `json:"text"`
	At   int64  `json:"at"`
	// Links is LinksPlain when the text holds a link sent before the
	// strangers talked a while (signal.chat_links: plain).
	Links string `json:"links,omitempty"`
}

// TypingMsg says the stranger started or stopped typing.
type TypingMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	On   bool   `json:"on"`
}

// RoomMsg is peer_left, peer_reconnecting or peer_resumed.
type RoomMsg struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

// ModeMsg is queued or idle.
type ModeMsg struct {
	Type string `json:"type"`
	Mode string `json:"mode,omitempty"`
}

// MediaMsg moves a room's media (Mode MediaSFU).
type MediaMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Mode string `json:"mode"`
}

// ErrorMsg is the error frame.
type ErrorMsg struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	// Until: with code banned, when the ban ends (unix ms).
	Until int64 `json:"until,omitempty"`
}

// Encode marshals an outbound message; our own types cannot fail to
// encode, so a failure is a bug and panics.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire: encoding %T: %v", v, err))
	}
	return b
}
