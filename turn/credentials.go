// Package turn is duet's integrated TURN relay: a pion/turn server with
// TURN REST credentials (coturn's use-auth-secret scheme), a peer-address
// policy that keeps it from being an open relay into private networks,
// per-session quotas, and per-room byte accounting for the admin API.
package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RFC-fixed: TURN REST passwords are HMAC-SHA1
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Username is a parsed TURN REST username. duet mints EXPIRY:ROOM:SESSION;
// coturn's tools make EXPIRY:USER or a bare EXPIRY, and all three work.
type Username struct {
	Expiry  time.Time
	Room    string // empty unless minted by duet
	Session string // empty unless minted by duet
	User    string // everything after the expiry
}

// QuotaKey is what allocation quotas count against. For duet-minted
// names it is the session, whatever the expiry, so a stranger who is
// handed a fresh credential (a resume, say) still shares one quota. Names
// made elsewhere from the secret (coturn's tools, `duet turn-credentials`)
// carry no session, so the whole name is the key: every client sharing a
// credential shares its quota.
func (u Username) QuotaKey() string {
	if u.Session != "" {
		return "s:" + u.Session
	}
	return "u:" + strconv.FormatInt(u.Expiry.Unix(), 10) + ":" + u.User
}

// Errors a username can fail with; also the auth-failure metric reasons.
var (
	ErrMalformed = errors.New("malformed TURN username: want EXPIRY[:USER] with EXPIRY in unix seconds")
	ErrExpired   = errors.New("TURN credential expired")
)

// maxUsernameLen bounds what we parse; STUN allows 513 bytes.
const maxUsernameLen = 513

// ParseUsername splits a TURN REST username. The expiry comes first, as
// coturn expects; a ROOM:SESSION pair after it is recognised so quotas and
// accounting can name the room.
func ParseUsername(s string) (Username, error) {
	if s == "" || len(s) > maxUsernameLen {
		return Username{}, ErrMalformed
	}
	head, user, _ := strings.Cut(s, ":")
	if head == "" || len(head) > 19 {
		return Username{}, ErrMalformed
	}
	for _, c := range head {
		if c < '0' || c > '9' {
			return Username{}, ErrMalformed
		}
	}
	secs, err := strconv.ParseInt(head, 10, 64)
	if err != nil || secs <= 0 {
		return Username{}, ErrMalformed
	}
	u := Username{Expiry: time.Unix(secs, 0), User: user}
	if room, session, ok := strings.Cut(user, ":"); ok && room != "" && session != "" && !strings.Contains(session, ":") {
		u.Room, u.Session = room, session
	}
	return u, nil
}

// Password is the TURN REST password for username under secret:
// base64(HMAC-SHA1(secret, username)).
func Password(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Credentials mints and checks TURN REST credentials. Secrets[0] mints;
// every secret in the list is accepted, so a secret can be rotated by
// putting the new one first and dropping the old one after the TTL.
type Credentials struct {
	Secrets []string
	TTL     time.Duration
	Now     func() time.Time
}

// Credential is one minted user/password pair.
type Credential struct {
	Username string
	Password string
	Expiry   time.Time
}

// Mint makes a credential for one stranger of one room.
func (c Credentials) Mint(room, session string) (Credential, error) {
	if strings.Contains(room, ":") || strings.Contains(session, ":") {
		return Credential{}, fmt.Errorf("turn: room %q or session %q contains ':'", room, session)
	}
	user := ""
	if room != "" || session != "" {
		user = room + ":" + session
	}
	return c.MintUser(user)
}

// MintUser makes a credential named EXPIRY:USER (a bare EXPIRY for an
// empty user), the form coturn's tools use.
func (c Credentials) MintUser(user string) (Credential, error) {
	if len(c.Secrets) == 0 || c.Secrets[0] == "" {
		return Credential{}, errors.New("turn: no secret to mint credentials with")
	}
	exp := c.Now().Add(c.TTL).Truncate(time.Second)
	name := strconv.FormatInt(exp.Unix(), 10)
	if user != "" {
		name += ":" + user
	}
	return Credential{Username: name, Password: Password(c.Secrets[0], name), Expiry: exp}, nil
}

// Check parses username and refuses it when it has expired.
func (c Credentials) Check(username string) (Username, error) {
	u, err := ParseUsername(username)
	if err != nil {
		return u, err
	}
	if !c.Now().Before(u.Expiry) {
		return u, fmt.Errorf("%w at %s", ErrExpired, u.Expiry.UTC().Format(time.RFC3339))
	}
	return u, nil
}
