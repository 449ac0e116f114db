package chatlink

import (
	"encoding/json"
	"os"
	"testing"
)

// cases.json is the table both this package and web/static/links.js are
// held to (e2e's browser test runs the page's copy over it).
func loadCases(t testing.TB) []struct {
	Text string `json:"text"`
	Link bool   `json:"link"`
} {
	b, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cs []struct {
		Text string `json:"text"`
		Link bool   `json:"link"`
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestContains(t *testing.T) {
	for _, c := range loadCases(t) {
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
