package node

import (
	"log"
	"log/slog"
	"net/netip"
	"strings"
)

// httpErrorLog is net/http's ErrorLog. Its lines name clients by address
// ("http: TLS handshake error from 198.51.100.7:51234: EOF"); each address
// in them is written as the salted hash the hub's logs and bans use, so
// the logs keep the promise of never holding a client's IP.
func (n *Node) httpErrorLog() *log.Logger {
	return log.New(scrubWriter{log: n.log, hash: n.hub.HashIP}, "", 0)
}

type scrubWriter struct {
	log  *slog.Logger
	hash func(ip string) string
}

func (w scrubWriter) Write(p []byte) (int, error) {
	w.log.Warn(scrubAddrs(strings.TrimSpace(string(p)), w.hash), "from", "net/http")
	return len(p), nil
}

// scrubAddrs replaces every IP address in s (bare, with a port, or
// bracketed IPv6 with a port) by "ip:" and its hash; the rest is kept.
func scrubAddrs(s string, hash func(string) string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if !addrByte(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && addrByte(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '%' { // an IPv6 zone: fe80::1%eth0
			k := j + 1
			for k < len(s) && zoneByte(s[k]) {
				k++
			}
			if _, err := netip.ParseAddr(strings.TrimPrefix(s[i:k], "[")); err == nil || strings.HasPrefix(s[i:], "[") {
				j = k
				for j < len(s) && addrByte(s[j]) { // "]:port"
					j++
				}
			}
		}
		tok := s[i:j]
		// Punctuation around an address is not part of it: "from 1.2.3.4:5:".
		// An address glued to a word ("ad" + "192.0.2.1") is found by
		// dropping leading bytes until what is left parses.
		core := strings.TrimRight(tok, ":.")
		k := 0
		for ; k < len(core); k++ {
			if a, ok := parseAddrIn(core[k:]); ok {
				b.WriteString(core[:k])
				b.WriteString("ip:" + hash(a.String()))
				b.WriteString(tok[len(core):])
				break
			}
		}
		if k == len(core) {
			b.WriteString(tok)
		}
		i = j
	}
	return b.String()
}

func parseAddrIn(tok string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(tok); err == nil {
		return ap.Addr(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(tok, "["), "]")); err == nil {
		return a, true
	}
	return netip.Addr{}, false
}

func addrByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == '[' || c == ']'
}

func zoneByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.'
}
