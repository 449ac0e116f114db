package turn

import (
	"net"
	"sync"

	"github.com/pion/stun/v3"
	pturn "github.com/pion/turn/v4"
)

// keyChooser lets the relay accept several secrets at once. pion asks the
// AuthHandler for one key per request and checks the integrity itself, so
// with more than one secret the right one must be known before pion asks:
// the listening sockets show each authenticated request to observe first,
// which tries every secret and remembers which one the request was signed
// with. With a single secret nothing is observed (the stream framer
// still calls verify, to know when a connection has authenticated).
type keyChooser struct {
	secrets []string

	mu     sync.Mutex
	chosen map[string]int // username + "|" + source address -> secret index
}

const maxChosen = 4096

func newKeyChooser(secrets []string) *keyChooser {
	return &keyChooser{secrets: secrets, chosen: map[string]int{}}
}

func (k *keyChooser) rotating() bool { return len(k.secrets) > 1 }

// observe records which secret signed msg, if it is a STUN request with
// USERNAME and MESSAGE-INTEGRITY.
func (k *keyChooser) observe(b []byte, src net.Addr) {
	if k.rotating() {
		k.verify(b, src)
	}
}

// verify reports the username of b when b is a STUN request whose
// MESSAGE-INTEGRITY checks out with one of the secrets, and, when several
// secrets are in use, remembers which one for pion's AuthHandler. The
// stream framer calls it for every request until one verifies, whatever
// the number of secrets: that is what lifts a TCP/TLS connection's short
// deadline.
func (k *keyChooser) verify(b []byte, src net.Addr) (string, bool) {
	if !stun.IsMessage(b) {
		return "", false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type.Class != stun.ClassRequest || !m.Contains(stun.AttrMessageIntegrity) {
		return "", false
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return "", false
	}
	for i, s := range k.secrets {
		key := pturn.GenerateAuthKey(user.String(), realm.String(), Password(s, user.String()))
		if stun.MessageIntegrity(key).Check(m) != nil {
			continue
		}
		if k.rotating() {
			k.mu.Lock()
			if len(k.chosen) >= maxChosen {
				k.chosen = map[string]int{}
			}
			k.chosen[user.String()+"|"+src.String()] = i
			k.mu.Unlock()
		}
		return user.String(), true
	}
	return "", false
}

// secret returns the secret to check username's request from src with.
func (k *keyChooser) secret(username string, src net.Addr) string {
	if !k.rotating() {
		return k.secrets[0]
	}
	key := username + "|" + src.String()
	k.mu.Lock()
	i, ok := k.chosen[key]
	delete(k.chosen, key)
	k.mu.Unlock()
	if !ok {
		return k.secrets[0]
	}
	return k.secrets[i]
}

// observedPacketConn shows every datagram to the key chooser before pion
// handles it (pion reads and handles one datagram at a time per socket).
// ChannelData the fast path knows goes straight to its relay socket
// and is never returned to pion.
type observedPacketConn struct {
	net.PacketConn
	keys *keyChooser
	fast *fastPath
	send *rawSender // this read loop's, for the fast path
}

func (c *observedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err == nil && n > 0 {
			if c.fast != nil && c.fast.fromClient(p[:n], addr, c.send) {
				continue
			}
			c.keys.observe(p[:n], addr)
		}
		return n, addr, err
	}
}
