package signal

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/wire"
)

func testBlockKeys(t *testing.T, salt string) *blockKeys {
	t.Helper()
	k, err := newBlockKeys([]byte(salt), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBlockHandle(t *testing.T) {
	k := testBlockKeys(t, "salt one")
	alice, bob := k.self("alice-token-0123456789", ""), k.self("bob-token-0123456789ab", "")
	if alice == bob || alice == "" {
		t.Fatalf("identities %q and %q", alice, bob)
	}
	if again := k.self("alice-token-0123456789", ""); again != alice {
		t.Fatal("one token, two identities")
	}
	if s := k.self("", "session-1"); s == alice || s == k.self("", "session-2") {
		t.Fatal("session identities collide")
	}
	seen := map[string]bool{}
	for range 1000 {
		h := k.handle(alice)
		if len(h) != handleChars {
			t.Fatalf("handle %q: %d characters, want %d", h, len(h), handleChars)
		}
		if seen[h] {
			t.Fatalf("handle %q handed out twice: strangers could recognise each other", h)
		}
		seen[h] = true
		if got, ok := k.open(h); !ok || got != alice {
			t.Fatalf("open(handle(alice)) = %q, %v", got, ok)
		}
		if strings.Contains(h, alice) {
			t.Fatalf("handle %q shows the identity %q", h, alice)
		}
	}
	// Another store's key (another salt) opens it to nobody in particular.
	other := testBlockKeys(t, "salt two")
	if got, ok := other.open(k.handle(alice)); ok && got == alice {
		t.Fatal("a handle opened under another key")
	}
	if k.handle("not an id") != "" {
		t.Fatal("a handle for a malformed identity")
	}
}

func TestBlockPrefs(t *testing.T) {
	k := testBlockKeys(t, "salt")
	bob := k.self("bob-token-0123456789ab", "")
	h1, h2 := k.handle(bob), k.handle(bob)
	for _, tc := range []struct {
		name    string
		me      string
		handles []string
		code    string
		blocked int
	}{
		{"none", "", nil, "", 0},
		{"token only", "alice-token-0123456789", nil, "", 0},
		{"two handles, one person", "alice-token-0123456789", []string{h1, h2}, "", 1},
		{"short token", "short", nil, wire.CodeBadRequest, 0},
		{"token with a space", "alice token 0123456789", nil, wire.CodeBadRequest, 0},
		{"long token", strings.Repeat("a", 65), nil, wire.CodeBadRequest, 0},
		{"not a handle", "", []string{"hello"}, wire.CodeBadRequest, 0},
		{"bad characters", "", []string{strings.Repeat("*", handleChars)}, wire.CodeBadRequest, 0},
		{"too many", "", make([]string, matcher.MaxBlocked+1), wire.CodeTooLarge, 0},
	} {
		self, blocked, e := k.blockPrefs(tc.me, tc.handles)
		switch {
		case tc.code != "" && (e == nil || e.Code != tc.code):
			t.Errorf("%s: error %v, want %s", tc.name, e, tc.code)
		case tc.code == "" && e != nil:
			t.Errorf("%s: %v", tc.name, e)
		case tc.code == "" && len(blocked) != tc.blocked:
			t.Errorf("%s: %d identities blocked, want %d", tc.name, len(blocked), tc.blocked)
		case tc.code == "" && (self != "") != (tc.me != ""):
			t.Errorf("%s: self %q for token %q", tc.name, self, tc.me)
		}
		if tc.name == "two handles, one person" && blocked[0] != bob {
			t.Errorf("blocked %v, want bob %s", blocked, bob)
		}
	}
}
