package turn

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/pion/stun/v3"
	pturn "github.com/pion/turn/v4"
)

// keyChooser lets the relay accept several secrets at once. pion asks the
// AuthHandler for one key per request and checks the integrity itself, so
// with more than one secret the right one must be known before pion asks:
// the listening sockets show each authenticated request to observe first,
// which tries every secret and remembers which one the request was signed
// with. With a single secret nothing is observed.
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
	if !k.rotating() || !stun.IsMessage(b) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return
	}
	for i, s := range k.secrets {
		key := pturn.GenerateAuthKey(user.String(), realm.String(), Password(s, user.String()))
		if stun.MessageIntegrity(key).Check(m) == nil {
			k.mu.Lock()
			if len(k.chosen) >= maxChosen {
				k.chosen = map[string]int{}
			}
			k.chosen[user.String()+"|"+src.String()] = i
			k.mu.Unlock()
			return
		}
	}
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
type observedPacketConn struct {
	net.PacketConn
	keys *keyChooser
}

func (c *observedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil && n > 0 {
		c.keys.observe(p[:n], addr)
	}
	return n, addr, err
}

// observedListener wraps each TCP/TLS connection so the key chooser sees
// whole frames and idle connections are cut.
type observedListener struct {
	net.Listener
	keys *keyChooser
	idle time.Duration
}

func (l *observedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &observedConn{Conn: c, keys: l.keys, idle: l.idle}, nil
}

// observedConn frames the TCP stream the way pion's STUNConn does (STUN
// messages and 4-byte-padded ChannelData), only to find the STUN requests.
type observedConn struct {
	net.Conn
	keys *keyChooser
	idle time.Duration
	buf  []byte
	skip int  // ChannelData bytes still to pass over
	lost bool // stream no longer parses; stop observing
}

// maxFrameBuffer bounds what is held while a STUN message arrives.
const maxFrameBuffer = 64 << 10

func (c *observedConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		// A client must refresh its allocation well within this, so a
		// silent connection is dead or hostile.
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.keys.rotating() && !c.lost {
		c.feed(p[:n])
	}
	return n, err
}

func (c *observedConn) feed(b []byte) {
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		}
		c.buf = append(c.buf, b...)
		b = nil
		for len(c.buf) >= 4 {
			first := c.buf[0]
			length := int(binary.BigEndian.Uint16(c.buf[2:4]))
			switch {
			case first < 0x40: // STUN
				total := length + 20
				if len(c.buf) < total {
					if total > maxFrameBuffer {
						c.lost = true
					}
					return
				}
				c.keys.observe(c.buf[:total], c.Conn.RemoteAddr())
				c.buf = c.buf[total:]
			case first < 0x80: // ChannelData, padded on streams
				total := 4 + (length+3)&^3
				if len(c.buf) >= total {
					c.buf = c.buf[total:]
					continue
				}
				c.skip = total - len(c.buf)
				c.buf = c.buf[:0]
			default:
				c.lost = true
				return
			}
		}
		if len(c.buf) == 0 {
			c.buf = nil
		}
	}
}
