package turn

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPasswordMatchesCoturnScheme(t *testing.T) {
	// base64(HMAC-SHA1(secret, username)), checked against an independent
	// computation: `printf %s 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`.
	if got, want := Password("s3cret", "1700000000:alice"), "TtElzSjT0GdnTQ9xdcRNxx96yQs="; got != want {
		t.Fatalf("Password = %q, want %q", got, want)
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in            string
		err           error
		user, room, s string
		quotaKey      string
	}{
		{in: "1700000000", user: "", quotaKey: "u:1700000000:"},
		{in: "1700000000:alice", user: "alice", quotaKey: "u:1700000000:alice"},
		{in: "1700000000:room1:sess1", user: "room1:sess1", room: "room1", s: "sess1", quotaKey: "s:sess1"},
		{in: "1700000000:a:b:c", user: "a:b:c", quotaKey: "u:1700000000:a:b:c"},
		{in: "1700000000::sess", user: ":sess", quotaKey: "u:1700000000::sess"},
		{in: "", err: ErrMalformed},
		{in: "alice", err: ErrMalformed},
		{in: "alice:1700000000", err: ErrMalformed},
		{in: "-5:x", err: ErrMalformed},
		{in: "0:x", err: ErrMalformed},
		{in: "+170:x", err: ErrMalformed},
		{in: "99999999999999999999:x", err: ErrMalformed},
		{in: ":x", err: ErrMalformed},
		{in: "1700000000:" + strings.Repeat("x", 600), err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseUsername(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if u.Expiry.Unix() != 1700000000 || u.User != tt.user || u.Room != tt.room || u.Session != tt.s {
				t.Fatalf("got %+v", u)
			}
			if u.QuotaKey() != tt.quotaKey {
				t.Fatalf("QuotaKey = %q, want %q", u.QuotaKey(), tt.quotaKey)
			}
		})
	}
}

func TestMintAndCheck(t *testing.T) {
	now := time.Unix(1800000000, 500)
	clock := func() time.Time { return now }
	c := Credentials{Secrets: []string{"new", "old"}, TTL: time.Hour, Now: clock}
	cred, err := c.Mint("ROOM", "SESS")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Username != "1800003600:ROOM:SESS" {
		t.Fatalf("username %q", cred.Username)
	}
	if cred.Password != Password("new", cred.Username) {
		t.Fatal("minted with a secret other than the first")
	}
	u, err := c.Check(cred.Username)
	if err != nil || u.Room != "ROOM" || u.Session != "SESS" {
		t.Fatalf("Check = %+v, %v", u, err)
	}
	now = now.Add(time.Hour)
	if _, err := c.Check(cred.Username); !errors.Is(err, ErrExpired) {
		t.Fatalf("an hour later Check = %v, want expired", err)
	}
	for _, bad := range [][2]string{{"a:b", "s"}, {"r", "s:t"}} {
		if _, err := c.Mint(bad[0], bad[1]); err == nil {
			t.Errorf("Mint(%q, %q) accepted a colon", bad[0], bad[1])
		}
	}
	if _, err := (Credentials{TTL: time.Hour, Now: clock}).Mint("r", "s"); err == nil {
		t.Error("Mint without a secret succeeded")
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:r:s", "1700000000", "x:1", "1:2:3:4", "", "9999999999999999999:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, strings.Split(s, ":")[0]) || u.Expiry.Unix() <= 0 {
			t.Fatalf("accepted %q as %+v", s, u)
		}
		if u.Session != "" && (strings.Contains(u.Session, ":") || u.Room == "") {
			t.Fatalf("bad split of %q: %+v", s, u)
		}
		if (u.Session == "") == strings.HasPrefix(u.QuotaKey(), "s:") {
			t.Fatalf("quota key %q for %+v", u.QuotaKey(), u)
		}
	})
}
