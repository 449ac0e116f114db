package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ProtocolVersion is the `welcome.protocol` this node speaks.
const ProtocolVersion = 1

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
)

// Peer-left reasons.
const (
	ReasonNext         = "next"
	ReasonLeave        = "leave"
	ReasonDisconnected = "disconnected"
	ReasonReported     = "reported"
	ReasonBanned       = "banned"
)

// inbound is every field any client message may carry. Decoding into typed
// fields makes encoding/json reject a field of the wrong type for us.
type inbound struct {
	Type      string          `json:"type"`
	Mode      string          `json:"mode"`
	Interests []string        `json:"interests"`
	Lang      string          `json:"lang"`
	Room      *string         `json:"room"`
	SDP       *string         `json:"sdp"`
	Leg       string          `json:"leg"`
	Candidate json.RawMessage `json:"candidate"`
	Text      *string         `json:"text"`
	On        *bool           `json:"on"`
	Reason    string          `json:"reason"`
	Face      *bool           `json:"face"`
}

// knownTypes bounds the label set of the per-type message counter.
var knownTypes = map[string]bool{
	"queue": true, "cancel": true, "ready": true, "offer": true, "answer": true,
	"candidate": true, "chat": true, "typing": true, "next": true, "leave": true,
	"report": true, "fallback": true,
}

// protoError is an error that goes back to the client as an `error` frame.
type protoError struct {
	code string
	msg  string
}

func (e *protoError) Error() string { return e.code + ": " + e.msg }

func perr(code, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...)}
}

// decode parses one text frame. On a field of the wrong type it returns
// the partly decoded message too, so the error can name its type.
func decode(frame []byte) (*inbound, *protoError) {
	if !utf8.Valid(frame) {
		return nil, perr(CodeBadJSON, "frame is not valid UTF-8")
	}
	if m, ok := fastDecode(frame); ok {
		return checkInbound(m)
	}
	var m inbound
	if err := json.Unmarshal(frame, &m); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return nil, perr(CodeBadRequest, "message must be a JSON object")
			}
			// encoding/json fills the other fields, so a well-typed
			// "type" still becomes the error's ref.
			return &m, perr(CodeBadRequest, "field %q must be of type %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return nil, perr(CodeBadJSON, "invalid JSON: %v", err)
	}
	return checkInbound(&m)
}

// checkInbound is what decode asks of a well-typed message.
func checkInbound(m *inbound) (*inbound, *protoError) {
	if m.Type == "" {
		return nil, perr(CodeBadRequest, "message has no \"type\"")
	}
	if m.Leg != "" && m.Leg != "sfu" {
		return m, perr(CodeBadRequest, "leg must be \"sfu\" or absent")
	}
	return m, nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice":
		return "array"
	case "ptr":
		return "the documented type"
	}
	return goKind
}

// ICECandidate is RTCIceCandidateInit; re-encoding through it drops any
// field a client smuggled in, so the stranger only ever sees these four.
// ICECandidate is an RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// parseCandidate validates a `candidate` field; nil means end of candidates.
func parseCandidate(raw json.RawMessage) (*ICECandidate, *protoError) {
	if len(raw) == 0 {
		return nil, perr(CodeBadRequest, "candidate is required (an RTCIceCandidateInit object or null)")
	}
	if string(raw) == "null" {
		return nil, nil
	}
	if c, ok := fastCandidate(raw); ok {
		return c, nil
	}
	var probe struct {
		Candidate *string `json:"candidate"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil || probe.Candidate == nil {
		return nil, perr(CodeBadRequest, "candidate must be an RTCIceCandidateInit object with a string \"candidate\", or null")
	}
	var c ICECandidate
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, perr(CodeBadRequest, "candidate has a field of the wrong type: %v", err)
	}
	return &c, nil
}

// Outbound messages. Slices are always non-nil so they encode as [].

type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

type features struct {
	SFU  bool `json:"sfu"`
	TURN bool `json:"turn"`
	Text bool `json:"text"`
	// FaceCheck: look for a face in your own camera before a video queue
	// and send the answer as queue.face.
	FaceCheck bool `json:"face_check"`
}

type welcomeMsg struct {
	Type     string   `json:"type"`
	Protocol int      `json:"protocol"`
	Session  string   `json:"session"`
	Token    string   `json:"token"`
	Features features `json:"features"`
	Online   int      `json:"online"`
	Resumed  bool     `json:"resumed"`
}

type matchedMsg struct {
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
}

type sdpMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	SDP  string `json:"sdp"`
	Leg  string `json:"leg,omitempty"`
}

type candidateMsg struct {
	Type      string        `json:"type"`
	Room      string        `json:"room"`
	Candidate *ICECandidate `json:"candidate"`
	Leg       string        `json:"leg,omitempty"`
}

type chatMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Text string `json:"text"`
	At   int64  `json:"at"`
}

type typingMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	On   bool   `json:"on"`
}

type roomMsg struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

type modeMsg struct {
	Type string `json:"type"`
	Mode string `json:"mode,omitempty"`
}

type errorMsg struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	// Until: with code banned, when the ban ends (unix ms).
	Until int64 `json:"until,omitempty"`
}

// encode marshals an outbound message; our own types cannot fail to encode.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("signal: encoding %T: %v", v, err))
	}
	return b
}
