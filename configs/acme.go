package configs

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// LetsEncrypt is the default http.acme.directory_url: Let's Encrypt's
// production directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// validate checks http.acme against the rest of http; what it cannot see
// from here (the cache directory is writable, the ports are free) the
// node checks when it starts.
func (a ACME) validate(h HTTP) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("http.acme.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for _, d := range a.Domains {
		if err := checkDomain(d); err != nil {
			bad("domains", "%q: %v", d, err)
		}
	}
	if a.HTTPListen != "" {
		if _, p, err := net.SplitHostPort(a.HTTPListen); err != nil || p == "" {
			bad("http_listen", "%q is not host:port (e.g. \":80\"), or \"\" for TLS-ALPN-01 only", a.HTTPListen)
		}
	}
	if !a.Enabled {
		return errs
	}
	if len(a.Domains) == 0 {
		bad("domains", "http.acme.enabled needs at least one domain (e.g. [\"chat.example.org\"]) that resolves to this node")
	}
	if h.TLSCertFile != "" {
		bad("enabled", "http.acme and http.tls_cert_file are both set: the node gets its own certificate with acme, so remove tls_cert_file/tls_key_file, or turn acme off")
	}
	if u, err := url.Parse(a.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("directory_url", "%q is not an https:// URL of an ACME directory (Let's Encrypt's is %s)", a.DirectoryURL, LetsEncrypt)
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t<>")) {
		bad("email", "%q is not an email address", a.Email)
	}
	if a.CacheDir == "" {
		bad("cache_dir", "must be set: the account key and certificates are kept there (with store.backend: redis they are shared in Redis, and the directory keeps a local copy)")
	}
	if _, p, _ := net.SplitHostPort(h.Listen); h.Listen == a.HTTPListen && p != "0" {
		bad("http_listen", "%q is also http.listen: the challenge and redirect listener needs its own port (80)", a.HTTPListen)
	}
	return errs
}

// checkDomain accepts a DNS name an ACME CA can validate with HTTP-01 or
// TLS-ALPN-01: no wildcard (those need DNS-01), no IP address.
func checkDomain(d string) error {
	switch {
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("wildcards need the DNS-01 challenge, which duet does not do; list each name")
	case isIP(d):
		return fmt.Errorf("an IP address; certificates are issued to DNS names")
	case len(d) == 0 || len(d) > 253 || !strings.Contains(d, "."):
		return fmt.Errorf("not a fully qualified DNS name (e.g. chat.example.org)")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q is not a DNS label", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not allowed in a DNS name", r)
			}
		}
	}
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}
