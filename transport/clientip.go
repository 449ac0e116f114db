package transport

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// OriginAllowed: no Origin (a non-browser client) passes; an empty allow
// list means the page must come from the host it connects to.
func OriginAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(allowed) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

// ClientIP is the address limits and bans key on: the direct peer's,
// unless that peer is a trusted proxy, in which case the proxy chain is
// read from the right (X-Forwarded-For, else Forwarded) and the first
// address that is not itself a trusted proxy is the client. A client can
// put anything in those headers, so nothing is believed from a peer that
// is not listed.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(trusted) == 0 || !isTrusted(host, trusted) {
		return host
	}
	chain := forwardedChain(r)
	for i := len(chain) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(chain[i])
		if err != nil {
			return host // a chain we cannot read names nobody
		}
		if !isTrusted(a.String(), trusted) {
			return a.Unmap().String()
		}
	}
	return host
}

func isTrusted(ip string, trusted []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedChain lists the addresses a proxy chain reports, client first.
func forwardedChain(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, part := range strings.Split(h, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, h := range r.Header.Values("Forwarded") {
		for _, elem := range strings.Split(h, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				v = strings.Trim(v, `"`)
				// for="[2001:db8::1]:4711" or for=192.0.2.1:80
				if strings.HasPrefix(v, "[") {
					if end := strings.Index(v, "]"); end > 0 {
						v = v[1:end]
					}
				} else if h, _, err := net.SplitHostPort(v); err == nil {
					v = h
				}
				out = append(out, v)
			}
		}
	}
	return out
}
