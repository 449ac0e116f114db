package chatlink

import "testing"

// Cases is the table both this package and web/static/links.js are held
// to (the browser test runs the page's copy over it).
var Cases = []struct {
	Text string
	Link bool
}{
	{"hello there", false},
	{"https://example.com", true},
	{"see HTTP://EXAMPLE.COM/x?y=1 now", true},
	{"ftp://files.example.net", true},
	{"wss://x.y/z", true},
	{"mailto:me@example.org", true},
	{"magnet:?xt=urn:btih:abc", true},
	{"www.example", true},
	{"go to WWW.Example.Info", true},
	{"example.com", true},
	{"visit example.com.", true},
	{"(example.com)", true},
	{"t.me/somebot", true},
	{"shop.example.co.uk/cart?x=1", true},
	{"cam-girls.xyz", true},
	{"пример.ru", true},
	{"me@gmail.com", true},
	{"10.0.0.1:8080", true},
	{"203.0.113.5/login", true},
	{"e.g. this", false},
	{"i.e. that", false},
	{"pi is 3.14", false},
	{"version 1.2.3.4", false},
	{"main.go and readme.md", false},
	{"node.js is fine", false},
	{"ok...com", false},
	{"hello.world", false},
	{"costs 5.99 now", false},
	{"comedy.company", false},
	{"example dot com", false}, // obfuscation: out of scope, documented
	{"awww.cute", false},
	{"-example.com", false},
	{"snake_case.com", false},
	{"", false},
}

func TestContains(t *testing.T) {
	for _, c := range Cases {
		if got := Contains(c.Text); got != c.Link {
			t.Errorf("Contains(%q) = %v, want %v", c.Text, got, c.Link)
		}
	}
}

func BenchmarkContains(b *testing.B) {
	text := "a perfectly ordinary chat message without anything in it. A little long, really."
	for b.Loop() {
		Contains(text)
	}
}
