package configs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Validate reports every problem at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "%q is not one of %q", v, allowed)
		}
	}
	port := func(key string, p int) {
		if p < 1 || p > 65535 {
			bad(key, "port %d is outside 1..65535", p)
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %s", d)
		}
	}
	hostPort := func(key, addr string, required bool) {
		if addr == "" {
			if required {
				bad(key, "must be set (host:port, e.g. \":8080\")")
			}
			return
		}
		if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
			bad(key, "%q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", addr)
		}
	}
	cidrs := func(key string, list []string) {
		for _, s := range list {
			if _, err := netip.ParsePrefix(s); err != nil {
				bad(key, "%q is not a CIDR prefix (e.g. \"203.0.113.0/24\")", s)
			}
		}
	}

	hostPort("http.listen", c.HTTP.Listen, true)
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		bad("http.tls_cert_file", "set both http.tls_cert_file and http.tls_key_file, or neither")
	}
	errs = append(errs, c.HTTP.ACME.validate(c.HTTP)...)
	positive("http.shutdown_grace", c.HTTP.ShutdownGrace)
	positive("http.idle_timeout", c.HTTP.IdleTimeout)
	if c.HTTP.MaxConnections < 0 {
		bad("http.max_connections", "must be 0 (as the open-file limit allows) or more")
	}
	if n := c.HTTP.MaxConnectionsPerIP; n < 0 || (n > 0 && n < c.Limits.ConnectionsPerIP) {
		bad("http.max_connections_per_ip", "must be 0 (limits.connections_per_ip + 16) or at least limits.connections_per_ip (%d): every WebSocket is a connection too", c.Limits.ConnectionsPerIP)
	}
	for _, p := range c.HTTP.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad("http.trusted_proxies", "%q is not an IP address or CIDR", p)
		}
	}
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			bad("public_ip", "%q is not an IP address", c.PublicIP)
		}
	}

	oneOf("store.backend", c.Store.Backend, "memory", "redis")
	if c.HTTP.ReusePort && c.Store.Backend != "redis" {
		// Two processes on one port with their own memory queues would
		// split the users into two pools that never meet.
		bad("http.reuse_port", "needs store.backend: redis (processes sharing a port must share their queues)")
	}
	if c.Store.Backend == "redis" && len(c.Store.Redis.Addrs) == 0 {
		bad("store.redis.addrs", "needs at least one address when store.backend is redis")
	}
	for _, a := range c.Store.Redis.Addrs {
		hostPort("store.redis.addrs", a, true)
	}
	if c.Store.Redis.DB < 0 {
		bad("store.redis.db", "must be 0 or more")
	}
	if c.Store.Redis.DB != 0 && len(c.Store.Redis.Addrs) > 1 {
		bad("store.redis.db", "a Redis Cluster (several addrs) has only db 0")
	}
	if c.Store.Redis.TLSCAFile != "" && !c.Store.Redis.TLS {
		bad("store.redis.tls_ca_file", "set store.redis.tls: true to use a CA file")
	}
	if strings.ContainsAny(c.Store.Redis.Node, "{}: \t") {
		bad("store.redis.node", "may not contain braces, colons or spaces")
	}

	positive("matcher.interest_timeout", c.Matcher.InterestTimeout)
	if c.Matcher.AvoidRepeat < 0 {
		bad("matcher.avoid_repeat", "must be 0 (off) or a positive duration")
	}

	if c.Signal.MaxMessageBytes < 1024 {
		bad("signal.max_message_bytes", "must be at least 1024, got %d", c.Signal.MaxMessageBytes)
	}
	if c.Signal.ChatMaxChars < 1 {
		bad("signal.chat_max_chars", "must be at least 1")
	}
	positive("signal.resume_grace", c.Signal.ResumeGrace)
	positive("signal.ping_interval", c.Signal.PingInterval)
	positive("signal.p2p_timeout", c.Signal.P2PTimeout)
	oneOf("signal.chat_links", c.Signal.ChatLinks, "allow", "plain", "hold")
	if c.Signal.FaceCheckInterval != 0 && c.Signal.FaceCheckInterval < time.Second {
		bad("signal.face_check_interval", "must be 0 (no re-check during a call) or at least 1s, got %s", c.Signal.FaceCheckInterval)
	}
	oneOf("signal.face_check_missing", c.Signal.FaceCheckMissing, "warn", "warn_then_leave")
	if c.Signal.FaceCheckGrace < 0 {
		bad("signal.face_check_grace", "must be 0 (leave at once) or a positive duration")
	}
	if c.Signal.ChatLinksAfter < 0 {
		bad("signal.chat_links_after", "must be 0 (no wait) or a positive duration")
	}
	if c.Signal.ChatLinksAfterMessages < 0 {
		bad("signal.chat_links_after_messages", "must be 0 or more")
	}
	if c.Site.MinAge < 0 || c.Site.MinAge > 99 {
		bad("site.min_age", "must be 0 (not asked) to 99, got %d", c.Site.MinAge)
	}
	if n := len([]rune(c.Site.Rules)); n > 4000 {
		bad("site.rules", "%d characters; at most 4000 (it is shown to every newcomer)", n)
	}

	oneOf("turn.mode", c.TURN.Mode, "auto", "always")
	hostPort("turn.listen_udp", c.TURN.ListenUDP, false)
	hostPort("turn.listen_tcp", c.TURN.ListenTCP, false)
	hostPort("turn.listen_tls", c.TURN.ListenTLS, false)
	positive("turn.credential_ttl", c.TURN.CredentialTTL)
	port("turn.relay_port_min", c.TURN.RelayPortMin)
	port("turn.relay_port_max", c.TURN.RelayPortMax)
	if c.TURN.RelayPortMin > c.TURN.RelayPortMax {
		bad("turn.relay_port_min", "%d is above turn.relay_port_max %d", c.TURN.RelayPortMin, c.TURN.RelayPortMax)
	}
	cidrs("turn.allowed_peer_cidrs", c.TURN.AllowedPeerCIDRs)
	cidrs("turn.denied_peer_cidrs", c.TURN.DeniedPeerCIDRs)
	if c.TURN.MaxAllocationsPerUser < 1 {
		bad("turn.max_allocations_per_user", "must be at least 1")
	}
	if c.TURN.MaxAllocations < 0 {
		bad("turn.max_allocations", "must be 0 (no cap) or more")
	}
	if c.TURN.MaxAllocationsPerIP < 0 {
		bad("turn.max_allocations_per_ip", "must be 0 (no cap) or more")
	}
	if c.Roles.TURN {
		if c.TURN.ListenUDP == "" && c.TURN.ListenTCP == "" && c.TURN.ListenTLS == "" {
			bad("turn.listen_udp", "roles.turn is true but listen_udp, listen_tcp and listen_tls are all empty (set roles.turn: false to run no relay)")
		}
		if c.TURN.ListenTLS != "" && c.TURN.TLSCertFile == "" && c.HTTP.TLSCertFile == "" && !c.HTTP.ACME.Enabled {
			bad("turn.listen_tls", "needs a certificate: set turn.tls_cert_file and turn.tls_key_file (or http's, or http.acme)")
		}
	}
	if (c.TURN.TLSCertFile == "") != (c.TURN.TLSKeyFile == "") {
		bad("turn.tls_cert_file", "turn.tls_cert_file and turn.tls_key_file must be set together")
	}
	if c.TURN.Mode == "always" && !c.Roles.TURN {
		bad("turn.mode", "always needs the integrated relay: set roles.turn: true (or turn.mode: auto)")
	}
	for i, s := range c.TURN.PreviousSecrets {
		if s == "" {
			bad("turn.previous_secrets", "entry %d is empty", i)
		}
	}
	positive("turn.tcp_auth_timeout", c.TURN.TCPAuthTimeout)
	if c.TURN.TCPConnectionsPerIP < 0 {
		bad("turn.tcp_connections_per_ip", "must be 0 (no cap) or more")
	}
	if c.TURN.MaxTCPConnections < 0 {
		bad("turn.max_tcp_connections", "must be 0 (no cap) or more")
	}

	// Load maps the deprecated switches onto the roles; a config built
	// by hand may still carry them.
	if c.TURN.Enabled != nil {
		bad("turn.enabled", "deprecated, set roles.turn instead")
	}
	if c.SFU.Enabled != nil {
		bad("sfu.enabled", "deprecated, set roles.sfu instead")
	}
	if c.SFU.Mode == "off" {
		bad("sfu.mode", "off is deprecated: set roles.sfu: false (and sfu.mode: fallback)")
	} else {
		oneOf("sfu.mode", c.SFU.Mode, "fallback", "always")
	}
	if c.SFU.TCPConnectionsPerIP < 0 {
		bad("sfu.tcp_connections_per_ip", "must be 0 (no cap) or more")
	}
	if c.SFU.MaxTCPConnections < 0 {
		bad("sfu.max_tcp_connections", "must be 0 (no cap) or more")
	}
	// 0 picks a free port (tests); the clients learn it from candidates.
	for key, p := range map[string]int{"sfu.udp_port": c.SFU.UDPPort, "sfu.tcp_port": c.SFU.TCPPort} {
		if p < 0 || p > 65535 {
			bad(key, "port %d is outside 0..65535", p)
		}
	}
	if c.SFU.ListenIP != "" {
		if _, err := netip.ParseAddr(c.SFU.ListenIP); err != nil {
			bad("sfu.listen_ip", "%q is not an IP address", c.SFU.ListenIP)
		}
	}
	if c.SFU.Mode == "always" && !c.Roles.SFU {
		bad("sfu.mode", "always needs the SFU: set roles.sfu: true (or sfu.mode: fallback)")
	}

	// Every limit is a positive number.
	lv := reflect.ValueOf(c.Limits)
	for i := 0; i < lv.NumField(); i++ {
		f := lv.Field(i)
		if (f.CanInt() && f.Int() <= 0) || (f.CanFloat() && f.Float() <= 0) {
			bad("limits."+yamlName(lv.Type().Field(i)), "must be greater than 0")
		}
	}
	if c.Limits.IPv6Prefix > 128 {
		bad("limits.ipv6_prefix", "%d is not an IPv6 prefix length (1..128)", c.Limits.IPv6Prefix)
	}
	if c.Moderation.ReportsToBan < 1 {
		bad("moderation.reports_to_ban", "must be at least 1")
	}
	positive("moderation.ban_duration", c.Moderation.BanDuration)
	positive("moderation.report_window", c.Moderation.ReportWindow)
	oneOf("moderation.shield", c.Moderation.Shield, "off", "blur-until-safe", "blur-on-detect")
	if n := c.Moderation.ShieldReportsToBan; n < 0 || n > c.Moderation.ReportsToBan {
		bad("moderation.shield_reports_to_ban", "%d is outside 0..reports_to_ban (%d): 0 counts shield reports like any other", n, c.Moderation.ReportsToBan)
	}
	if c.Bots.POW {
		positive("bots.pow_expiry", c.Bots.POWExpiry)
		positive("bots.pow_pass_ttl", c.Bots.POWPassTTL)
		if c.Bots.POWCost < 1 || c.Bots.POWMaxCost < c.Bots.POWCost {
			bad("bots.pow_cost", "want 1 <= pow_cost <= pow_max_cost (%d, %d)", c.Bots.POWCost, c.Bots.POWMaxCost)
		}
		if c.Bots.POWPassJoins < 1 {
			bad("bots.pow_pass_joins", "must be at least 1")
		}
	}
	hostPort("metrics.listen", c.Metrics.Listen, false)
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	return errors.Join(errs...)
}

// ParsePrefix reads an IP ("10.0.0.1", a single address) or a CIDR.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
