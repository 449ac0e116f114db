// Package pow makes a client pay for a place in the queue: the node hands
// out ALTCHA-compatible proof-of-work challenges and checks their
// solutions before a join. A challenge is signed, not stored: any node
// holding the same HMAC key checks any node's challenge, and only the
// solutions already spent are remembered (until they expire), in memory
// on one node or in Redis on many. An address that asks often gets harder
// challenges, and one solution buys a session a few joins (see Pass).
package pow

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only ALTCHA algorithm issued and accepted.
const Algorithm = "SHA-256"

// MaxPayloadBytes bounds a solution as it arrives (base64 of a small
// JSON object: about 300 bytes); anything longer is refused unread.
const MaxPayloadBytes = 1024

// Challenge is what the client solves: find the number in [0, MaxNumber]
// with hex(SHA-256(Salt + decimal(number))) == Challenge. The fields and
// their JSON names are ALTCHA's.
type Challenge struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	MaxNumber int64  `json:"maxnumber"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// solution is the decoded payload: ALTCHA's base64 JSON object. Number is
// a json.Number so a float, a huge or a negative value is refused by us,
// not rounded by the decoder.
type solution struct {
	Algorithm string      `json:"algorithm"`
	Challenge string      `json:"challenge"`
	Number    json.Number `json:"number"`
	Salt      string      `json:"salt"`
	Signature string      `json:"signature"`
}

// signer makes and checks challenges with one HMAC key.
type signer struct {
	key    []byte
	rand   io.Reader
	expiry time.Duration
}

// issue makes a challenge whose secret number is drawn from [0, max] and
// which expires at now+expiry. The expiry rides in the salt (ALTCHA's
// "?expires=" parameter) and is signed with it; the trailing "&" ends
// the parameter, so digits moved from the number onto the salt cannot
// stretch the expiry.
func (g *signer) issue(now time.Time, max int64) (Challenge, error) {
	var nonce [12]byte
	if _, err := io.ReadFull(g.rand, nonce[:]); err != nil {
		return Challenge{}, fmt.Errorf("pow: reading randomness: %w", err)
	}
	n, err := rand.Int(g.rand, big.NewInt(max+1))
	if err != nil {
		return Challenge{}, fmt.Errorf("pow: drawing the secret number: %w", err)
	}
	salt := hex.EncodeToString(nonce[:]) + "?expires=" + strconv.FormatInt(now.Add(g.expiry).Unix(), 10) + "&"
	ch := hashHex(salt, n.Int64())
	return Challenge{Algorithm: Algorithm, Challenge: ch, MaxNumber: max, Salt: salt, Signature: g.sign(ch)}, nil
}

func (g *signer) sign(challenge string) string {
	m := hmac.New(sha256.New, g.key)
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

func hashHex(salt string, n int64) string {
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(n, 10)))
	return hex.EncodeToString(sum[:])
}

// checked is a solution that passed: its challenge (the key a replay is
// caught on) and when it expires.
type checked struct {
	challenge string
	expires   time.Time
}

// check verifies a payload against the key and the clock; it does not
// know whether the solution was spent before. The order puts the cheap
// refusals first; the answer does not depend on it.
func (g *signer) check(payload string, now time.Time) (checked, error) {
	if len(payload) > MaxPayloadBytes {
		return checked{}, refuse(reasonMalformed, "the solution is longer than %d bytes", MaxPayloadBytes)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return checked{}, refuse(reasonMalformed, "the solution is not base64")
	}
	var s solution
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return checked{}, refuse(reasonMalformed, "the solution is not a JSON object of the documented fields")
	}
	if s.Algorithm != Algorithm {
		return checked{}, refuse(reasonAlgorithm, "algorithm must be %q", Algorithm)
	}
	n, err := strconv.ParseInt(s.Number.String(), 10, 64)
	if err != nil || n < 0 {
		return checked{}, refuse(reasonMalformed, "number must be a whole number of at least 0")
	}
	expires, ok := saltExpiry(s.Salt)
	if !ok {
		return checked{}, refuse(reasonMalformed, "the salt carries no expiry; ask for a new challenge")
	}
	// A solution also may not claim to live longer than this node issues
	// them for: a forged expiry would outlive the replay memory.
	if !now.Before(expires) || expires.After(now.Add(g.expiry+time.Minute)) {
		return checked{}, refuse(reasonExpired, "the challenge has expired; ask for a new one")
	}
	if !hmac.Equal([]byte(g.sign(s.Challenge)), []byte(strings.ToLower(s.Signature))) {
		return checked{}, refuse(reasonSignature, "the challenge was not issued by this service")
	}
	if hashHex(s.Salt, n) != s.Challenge {
		return checked{}, refuse(reasonNumber, "the number does not solve the challenge")
	}
	return checked{challenge: s.Challenge, expires: expires}, nil
}

// saltExpiry reads the "expires" parameter (Unix seconds) of an
// ALTCHA salt "NONCE?expires=SECONDS&".
func saltExpiry(salt string) (time.Time, bool) {
	_, query, found := strings.Cut(salt, "?")
	if !found || !strings.HasSuffix(query, "&") {
		return time.Time{}, false
	}
	v, err := url.ParseQuery(query)
	if err != nil || len(v["expires"]) != 1 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(v.Get("expires"), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}
