package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: no frame makes the decoder panic, and every refusal is one
// of the protocol's error codes with a message.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"queue","mode":"video","interests":["a"]}`,
		`{"type":"candidate","room":"r","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"candidate","room":"r","candidate":null}`,
		`{"type":5}`, `[]`, `{`, `"x"`, `{"type":"offer","leg":"mars"}`,
		"{\"type\":\"chat\",\"text\":\"\xff\"}", strings.Repeat("[", 100),
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"offer","room":"r","sdp":"v=0\r\na=x\"\\\/\t"}`))
	f.Add([]byte(`{"type":"candidate","room":"r","candidate":{"a":[1,-2.5e+3,true,null,{"b":[]}]}}`))
	f.Add([]byte(`{"type":"typing","room":"r","on":true,"interests":["a","b"],"face":false}`))
	codes := map[string]bool{CodeBadJSON: true, CodeBadRequest: true}
	f.Fuzz(func(t *testing.T, frame []byte) {
		// Where the fast path answers, it answers what encoding/json would.
		if utf8.Valid(frame) {
			sameAsSlow(t, frame)
		}
		m, e := Decode(frame)
		if e != nil {
			if !codes[e.Code] || e.Msg == "" {
				t.Fatalf("Decode(%q) error %q/%q", frame, e.Code, e.Msg)
			}
			return
		}
		if m == nil || m.Type == "" {
			t.Fatalf("Decode(%q) accepted a message without type", frame)
		}
		if m.Candidate != nil {
			sameCandidateAsSlow(t, m.Candidate)
			_, _ = ParseCandidate(m.Candidate)
		}
	})
}

// FuzzSanitizeChat: the result is valid UTF-8, trimmed, has no control
// or bidi-override characters, and sanitising twice changes nothing.
func FuzzSanitizeChat(f *testing.F) {
	for _, s := range []string{"hello", " a\u202eb ", "你好👋", "\x00\x1b[31m", "a\nb\tc", "\u2066x\u2069"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SanitizeChat(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 from %q", in)
		}
		if out != strings.TrimSpace(out) {
			t.Fatalf("not trimmed: %q", out)
		}
		for _, r := range out {
			if dropChatRune(r) {
				t.Fatalf("%q kept %U", out, r)
			}
		}
		if again := SanitizeChat(out); again != out {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}
