package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Inbound is every field any client message may carry. Decoding into typed
// fields makes encoding/json reject a field of the wrong type for us.
type Inbound struct {
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
	// Me is the browser's block token, Blocked the block handles it
	// holds (queue; next may carry them too).
	Me      string   `json:"me"`
	Blocked []string `json:"blocked"`
	// Event is what a shield message counts.
	Event string `json:"event"`
	// Pow is a solved proof-of-work challenge (queue, next).
	Pow string `json:"pow"`
}

// Error is a refusal that goes back to the client as an `error` frame.
type Error struct {
	Code string // one of the Code constants
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Errorf builds an Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Decode parses one text frame. On a field of the wrong type it returns
// the partly decoded message too, so the error can name its type.
func Decode(frame []byte) (*Inbound, *Error) {
	if !utf8.Valid(frame) {
		return nil, Errorf(CodeBadJSON, "frame is not valid UTF-8")
	}
	if m, ok := fastDecode(frame); ok {
		return checkInbound(m)
	}
	var m Inbound
	if err := json.Unmarshal(frame, &m); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return nil, Errorf(CodeBadRequest, "message must be a JSON object")
			}
			// encoding/json fills the other fields, so a well-typed
			// "type" still becomes the error's ref.
			return &m, Errorf(CodeBadRequest, "field %q must be of type %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return nil, Errorf(CodeBadJSON, "invalid JSON: %v", err)
	}
	return checkInbound(&m)
}

// checkInbound is what Decode asks of a well-typed message.
func checkInbound(m *Inbound) (*Inbound, *Error) {
	if m.Type == "" {
		return nil, Errorf(CodeBadRequest, "message has no \"type\"")
	}
	if m.Leg != "" && m.Leg != LegSFU {
		return m, Errorf(CodeBadRequest, "leg must be \"sfu\" or absent")
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

// ICECandidate is an RTCIceCandidateInit; re-encoding through it drops
// any field a client smuggled in, so the stranger only ever sees these
// four.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// ParseCandidate validates a `candidate` field; nil means end of
// candidates.
func ParseCandidate(raw json.RawMessage) (*ICECandidate, *Error) {
	if len(raw) == 0 {
		return nil, Errorf(CodeBadRequest, "candidate is required (an RTCIceCandidateInit object or null)")
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
		return nil, Errorf(CodeBadRequest, "candidate must be an RTCIceCandidateInit object with a string \"candidate\", or null")
	}
	var c ICECandidate
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, Errorf(CodeBadRequest, "candidate has a field of the wrong type: %v", err)
	}
	return &c, nil
}
