package wire

import "encoding/json"

// fastDecode parses the frames well-behaved clients send - one flat JSON
// object whose keys are spelled exactly as the protocol spells them, each
// once, strings without \u escapes - in one pass without reflection.
// encoding/json validates the whole frame, then walks it again through
// reflection, and in a node's CPU profile under load that was a quarter
// of the node's time (an offer's SDP is ~3 KiB of escaped text).
//
// Anything else (an unknown or odd-cased key, a duplicate, a null, a
// \u escape, a wrong type, bad JSON) returns false and the caller decodes
// with encoding/json, which also words the errors: this is only a fast
// path, and where it answers it answers exactly what encoding/json would
// (FuzzDecode checks that on every input it takes).
func fastDecode(frame []byte) (*Inbound, bool) {
	p := parser{b: frame}
	p.space()
	if !p.byte('{') {
		return nil, false
	}
	m := &Inbound{}
	if _, ok := p.object(func(key []byte) (uint16, bool) { return p.field(m, key) }); !ok {
		return nil, false
	}
	p.space()
	return m, p.i == len(p.b)
}

type parser struct {
	b []byte
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// key reads an object key without escapes, as a sub-slice of the frame.
func (p *parser) key() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// field reads the value of key into m; the bit marks the field as seen.
func (p *parser) field(m *Inbound, key []byte) (uint16, bool) {
	var ok bool
	switch string(key) { // no allocation: the compiler compares in place
	case "type":
		m.Type, ok = p.str()
		return 1 << 0, ok
	case "mode":
		m.Mode, ok = p.str()
		return 1 << 1, ok
	case "interests":
		m.Interests, ok = p.strs()
		return 1 << 2, ok
	case "lang":
		m.Lang, ok = p.str()
		return 1 << 3, ok
	case "room":
		m.Room, ok = p.strPtr()
		return 1 << 4, ok
	case "sdp":
		m.SDP, ok = p.strPtr()
		return 1 << 5, ok
	case "leg":
		m.Leg, ok = p.str()
		return 1 << 6, ok
	case "candidate":
		m.Candidate, ok = p.raw()
		return 1 << 7, ok
	case "text":
		m.Text, ok = p.strPtr()
		return 1 << 8, ok
	case "on":
		m.On, ok = p.boolPtr()
		return 1 << 9, ok
	case "reason":
		m.Reason, ok = p.str()
		return 1 << 10, ok
	case "face":
		m.Face, ok = p.boolPtr()
		return 1 << 11, ok
	case "event":
		m.Event, ok = p.str()
		return 1 << 13, ok
	case "pow":
		m.Pow, ok = p.str()
		return 1 << 12, ok
	}
	return 0, false
}

// str reads a string with at most the short escapes (\" \\ \/ \b \f \n
// \r \t); the frame is valid UTF-8 (Decode checked), so its bytes copy
// as they are.
func (p *parser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// escaped finishes a string that has escapes, from its first backslash;
// the plain runs between escapes are copied whole.
func (p *parser) escaped(start int) (string, bool) {
	out := make([]byte, p.i-start, len(p.b)-start)
	copy(out, p.b[start:p.i])
	for {
		j := p.i
		for j < len(p.b) && p.b[j] != '"' && p.b[j] != '\\' && p.b[j] >= 0x20 {
			j++
		}
		out = append(out, p.b[p.i:j]...)
		p.i = j
		if j+1 >= len(p.b) || p.b[j] < 0x20 {
			return "", false // unterminated, or a raw control character
		}
		if p.b[j] == '"' {
			p.i++
			return string(out), true
		}
		switch p.b[j+1] {
		case '"', '\\', '/':
			out = append(out, p.b[j+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // \u (surrogates and all) is left to encoding/json
			return "", false
		}
		p.i += 2
	}
}

func (p *parser) strPtr() (*string, bool) {
	s, ok := p.str()
	if !ok {
		return nil, false
	}
	return &s, true
}

func (p *parser) strs() ([]string, bool) {
	if !p.byte('[') {
		return nil, false
	}
	out := []string{}
	ok := p.list(']', func() bool {
		s, ok := p.str()
		out = append(out, s)
		return ok
	})
	if !ok {
		return nil, false
	}
	return out, true
}

// object reads an object's members (its '{' already read): field reads
// the value of each key and names it by a bit; an unknown key (field
// says false) or a repeated one fails. It returns the bits seen.
func (p *parser) object(field func(key []byte) (uint16, bool)) (uint16, bool) {
	var seen uint16
	ok := p.list('}', func() bool {
		key, ok := p.key()
		if !ok || !p.colon() {
			return false
		}
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
	return seen, ok
}

// list reads comma-separated items up to close (its opener already read).
func (p *parser) list(close byte, item func() bool) bool {
	p.space()
	if p.byte(close) {
		return true
	}
	for {
		if !item() {
			return false
		}
		p.space()
		if p.byte(close) {
			return true
		}
		if !p.byte(',') {
			return false
		}
		p.space()
	}
}

// colon reads the ':' after a key, with the space around it.
func (p *parser) colon() bool {
	p.space()
	if !p.byte(':') {
		return false
	}
	p.space()
	return true
}

func (p *parser) boolPtr() (*bool, bool) {
	for _, lit := range []struct {
		text string
		v    bool
	}{{"true", true}, {"false", false}} {
		if p.literal(lit.text) {
			v := lit.v
			return &v, true
		}
	}
	return nil, false
}

func (p *parser) literal(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// raw reads one JSON object (a candidate) and returns a copy of its
// bytes, as json.RawMessage would hold them.
func (p *parser) raw() (json.RawMessage, bool) {
	start := p.i
	if p.peek() != '{' || !p.skip(0) {
		return nil, false
	}
	return append(json.RawMessage(nil), p.b[start:p.i]...), true
}

// maxSkipDepth bounds nesting inside a raw value; deeper goes the slow way.
const maxSkipDepth = 32

// skip moves past one JSON value, checking its grammar.
func (p *parser) skip(depth int) bool {
	if depth > maxSkipDepth {
		return false
	}
	switch c := p.peek(); {
	case c == '{':
		p.i++
		return p.list('}', func() bool {
			_, ok := p.str()
			return ok && p.colon() && p.skip(depth+1)
		})
	case c == '[':
		p.i++
		return p.list(']', func() bool { return p.skip(depth + 1) })
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return p.literal("true") || p.literal("false") || p.literal("null")
	}
}

// number checks JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() bool {
	p.byte('-')
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return false
	}
	if p.byte('.') && !p.digits() {
		return false
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

// digits moves past [0-9]+; false when there is none.
func (p *parser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// fastCandidate parses the RTCIceCandidateInit browsers send - its four
// keys spelled exactly, each once, sdpMLineIndex a plain integer - in one
// pass; false leaves the candidate to ParseCandidate's encoding/json path
// (FuzzDecode checks both agree wherever this one answers).
func fastCandidate(raw []byte) (*ICECandidate, bool) {
	p := parser{b: raw}
	if !p.byte('{') {
		return nil, false
	}
	var c ICECandidate
	seen, ok := p.object(func(key []byte) (uint16, bool) {
		var ok bool
		switch string(key) {
		case "candidate":
			c.Candidate, ok = p.str()
			return 1 << 0, ok
		case "sdpMid":
			c.SDPMid, ok = p.nullableStr()
			return 1 << 1, ok
		case "sdpMLineIndex":
			c.SDPMLineIndex, ok = p.nullableUint16()
			return 1 << 2, ok
		case "usernameFragment":
			c.UsernameFragment, ok = p.nullableStr()
			return 1 << 3, ok
		}
		return 0, false
	})
	// A candidate without its "candidate" string is refused, with words
	// only the slow path has.
	if !ok || seen&1 == 0 || p.i != len(p.b) {
		return nil, false
	}
	return &c, true
}

func (p *parser) nullableStr() (*string, bool) {
	if p.literal("null") {
		return nil, true
	}
	return p.strPtr()
}

// nullableUint16 reads null or a plain integer 0..65535 (no sign,
// fraction or exponent: those go the slow way).
func (p *parser) nullableUint16() (*uint16, bool) {
	if p.literal("null") {
		return nil, true
	}
	start := p.i
	if !p.digits() || p.i-start > 5 || p.i-start > 1 && p.b[start] == '0' {
		return nil, false
	}
	if c := p.peek(); c == '.' || c == 'e' || c == 'E' {
		return nil, false
	}
	n := 0
	for _, d := range p.b[start:p.i] {
		n = n*10 + int(d-'0')
	}
	if n > 65535 {
		return nil, false
	}
	v := uint16(n)
	return &v, true
}
