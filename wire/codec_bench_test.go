package wire

import (
	"strings"
	"testing"
)

// The messages a busy node handles most: trickled candidates in, chat out.
func BenchmarkDecode(b *testing.B) {
	frames := map[string][]byte{
		"candidate": []byte(`{"type":"candidate","room":"Br7eBJ6mPFz0kpEWRecmqg","candidate":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag r2Zb network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"r2Zb"}}`),
		"chat":      []byte(`{"type":"chat","room":"Br7eBJ6mPFz0kpEWRecmqg","text":"hello there, where are you from?"}`),
		// A browser-sized offer (~3 KiB of SDP, escaped line ends).
		"offer": []byte(`{"type":"offer","room":"Br7eBJ6mPFz0kpEWRecmqg","sdp":"v=0\r\n` + strings.Repeat(`a=a-typical-sdp-attribute-line-of-a-browser-offer\r\n`, 60) + `"}`),
	}
	for name, f := range frames {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				if _, err := Decode(f); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same frame through encoding/json alone: what Decode cost
		// before its fast path.
		b.Run(name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				if _, err := slowDecode(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	msgs := map[string]any{
		"chat": ChatMsg{Type: "chat", Room: "Br7eBJ6mPFz0kpEWRecmqg", Text: "hello there, where are you from?", At: 1764500000000},
		"matched": MatchedMsg{Type: "matched", Room: "Br7eBJ6mPFz0kpEWRecmqg", Role: "offerer", Mode: "video",
			CommonInterests: []string{"music"}, ICEServers: []ICEServer{{URLs: []string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp"}, Username: "1764503600:room:session", Credential: "c2VjcmV0"}}},
		"offer": SDPMsg{Type: "offer", Room: "Br7eBJ6mPFz0kpEWRecmqg", SDP: "v=0\r\n" + strings.Repeat("a=a-typical-sdp-attribute-line-of-a-browser-offer\r\n", 60)},
	}
	for name, m := range msgs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Encode(m)
			}
		})
	}
}
