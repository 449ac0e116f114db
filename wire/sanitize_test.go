package wire

import "testing"

func TestSanitizeChat(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello", "hello"},
		{"trimmed", "  hi there \n", "hi there"},
		{"newline and tab kept inside", "a\nb\tc", "a\nb\tc"},
		{"C0 controls dropped", "a\x00b\x07c\x1bd", "abcd"},
		{"DEL and C1 dropped", "a\x7fb\u0085c\u009fd", "abcd"},
		{"bidi overrides dropped", "evil\u202egnp.exe", "evilgnp.exe"},
		{"all embedding/override chars", "\u202a\u202b\u202c\u202d\u202ex", "x"},
		{"isolates dropped", "\u2066a\u2067b\u2068c\u2069", "abc"},
		{"CJK kept", "你好，世界", "你好，世界"},
		{"emoji kept", "hi 👋🏽 ❤️", "hi 👋🏽 ❤️"},
		{"RTL letters kept", "שלום مرحبا", "שלום مرحبا"},
		{"LRM/RLM marks kept", "a\u200eb\u200fc", "a\u200eb\u200fc"},
		{"only controls becomes empty", "\x01\u202e \t", ""},
		{"invalid utf8 dropped", "a\xffb", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SanitizeChat(tt.in); got != tt.want {
				t.Errorf("SanitizeChat(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
