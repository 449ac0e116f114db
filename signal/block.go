package signal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"slices"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/wire"
)

// blockKeys turn a browser's block token into the identity the matcher
// compares (matcher.Ticket.Self) and seal that identity into the handles
// strangers are given to block each other with.
//
// A browser keeps one random token (queue.me) and its list of handles
// (queue.blocked). The node never hands a token or an identity to the
// other side: each `matched` carries a fresh handle, the stranger's
// identity encrypted with a random half, so two handles for one person
// look unrelated. A user can block whom they met, and learn nothing that
// recognises that person again, nor compare notes with another user.
//
// Both keys derive from the IP-hash salt, which every node on one store
// shares: a handle sealed by one node opens on any other.
type blockKeys struct {
	id   []byte       // HMAC key: token -> identity
	seal cipher.Block // AES-256 over one block: identity ‖ random
	rand io.Reader
}

// idBytes is an identity's length: 64 bits keep two people's apart among
// billions, and an identity and its random half fill one AES block.
const idBytes = 8

func newBlockKeys(salt []byte, random io.Reader) (*blockKeys, error) {
	derive := func(label string) []byte {
		mac := hmac.New(sha256.New, salt)
		mac.Write([]byte(label))
		return mac.Sum(nil)
	}
	c, err := aes.NewCipher(derive("duet block handle v1"))
	if err != nil {
		return nil, fmt.Errorf("signal: block key: %w", err)
	}
	return &blockKeys{id: derive("duet block identity v1"), seal: c, rand: random}, nil
}

// self is the identity of a browser token, or, for a client that sent
// none, of its session: blocking then holds for that session.
func (k *blockKeys) self(me, session string) string {
	mac := hmac.New(sha256.New, k.id)
	if me != "" {
		mac.Write([]byte("me\x00" + me))
	} else {
		mac.Write([]byte("session\x00" + session))
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:idBytes])
}

// handle seals identity self into a fresh opaque handle ("" for none).
// One AES block holds the identity and 64 random bits: the block cipher
// is a permutation, so each handle is unrelated to the last, and only a
// holder of the key gets the identity back.
func (k *blockKeys) handle(self string) string {
	id, err := base64.RawURLEncoding.DecodeString(self)
	if err != nil || len(id) != idBytes {
		return ""
	}
	var b [aes.BlockSize]byte
	copy(b[:], id)
	if _, err := io.ReadFull(k.rand, b[idBytes:]); err != nil {
		return ""
	}
	k.seal.Encrypt(b[:], b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// open is handle's inverse. A handle sealed under another key (the store
// was reset, a new salt) opens to an identity nobody has, so it simply
// blocks nobody.
func (k *blockKeys) open(h string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || len(b) != aes.BlockSize {
		return "", false
	}
	k.seal.Decrypt(b, b)
	return base64.RawURLEncoding.EncodeToString(b[:idBytes]), true
}

// handleChars is a handle's length: one AES block in URL-safe base64.
const handleChars = 22

// blockPrefs checks queue.me and queue.blocked and returns the identity
// of me ("" when absent) and the identities the handles stand for.
func (k *blockKeys) blockPrefs(me string, handles []string) (self string, blocked []string, e *wire.Error) {
	if me != "" && !validToken(me) {
		return "", nil, wire.Errorf(wire.CodeBadRequest, "me must be 16 to 64 URL-safe base64 characters (A-Z a-z 0-9 - _)")
	}
	if len(handles) > matcher.MaxBlocked {
		return "", nil, wire.Errorf(wire.CodeTooLarge, "blocked holds %d handles; at most %d (forget the oldest)", len(handles), matcher.MaxBlocked)
	}
	for _, h := range handles {
		id, ok := k.open(h)
		if !ok {
			return "", nil, wire.Errorf(wire.CodeBadRequest, "blocked: each entry must be a handle from matched.block (%d URL-safe base64 characters)", handleChars)
		}
		if !slices.Contains(blocked, id) {
			blocked = append(blocked, id)
		}
	}
	if me != "" {
		self = k.self(me, "")
	}
	return self, blocked, nil
}

func validToken(s string) bool {
	if len(s) < 16 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
