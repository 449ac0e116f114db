// Package configs holds duet's typed configuration, the embedded default
// YAML, and the one loader that turns defaults, a YAML file and DUET_*
// environment variables into a validated Config.
package configs

import "time"

// Config is the whole node configuration. Section names are part of the
// operator contract (see README "Configuration"); fields may be added.
type Config struct {
	HTTP       HTTP       `yaml:"http"`
	PublicIP   string     `yaml:"public_ip"`
	Store      Store      `yaml:"store"`
	Roles      Roles      `yaml:"roles"`
	Matcher    Matcher    `yaml:"matcher"`
	Signal     Signal     `yaml:"signal"`
	TURN       TURN       `yaml:"turn"`
	SFU        SFU        `yaml:"sfu"`
	Limits     Limits     `yaml:"limits"`
	Moderation Moderation `yaml:"moderation"`
	Site       Site       `yaml:"site"`
	Bots       Bots       `yaml:"bots"`
	Admin      Admin      `yaml:"admin"`
	Metrics    Metrics    `yaml:"metrics"`
	Log        Log        `yaml:"log"`

	// Warnings are what Load noticed but accepted: deprecated keys it
	// mapped onto their replacements. `duet serve` logs them and
	// `duet config` prints them on stderr; never written as YAML.
	Warnings []string `yaml:"-"`
}

type HTTP struct {
	Listen         string   `yaml:"listen"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	TLSCertFile    string   `yaml:"tls_cert_file"`
	TLSKeyFile     string   `yaml:"tls_key_file"`
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// X-Forwarded-For / Forwarded headers name the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ShutdownGrace bounds how long a SIGTERM drain waits for clients.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ReusePort binds Listen with SO_REUSEPORT, so a second duet can bind
	// the same address: a new version starts while the old one drains.
	ReusePort bool `yaml:"reuse_port"`
	// IdleTimeout closes a keep-alive connection that has waited this
	// long for its next request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections caps open HTTP connections, WebSockets included;
	// 0 = as many as the open-file limit leaves room for. At the cap a
	// new connection closes the one idle longest, or is closed itself.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps one address's connections at the listener
	// (WebSockets included; trusted proxies are exempt);
	// 0 = limits.connections_per_ip + 16.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// ACME obtains and renews the HTTPS certificate by itself (instead
	// of TLSCertFile/TLSKeyFile); Listen is then the HTTPS address.
	ACME ACME `yaml:"acme"`
}

// ACME is http.acme: a certificate from an ACME CA (Let's Encrypt by
// default), obtained and renewed by the node.
type ACME struct {
	Enabled bool     `yaml:"enabled"`
	Domains []string `yaml:"domains"` // names the certificate covers; the first is the one clients are told
	Email   string   `yaml:"email"`   // the CA's contact for expiry and policy mail; may be empty
	// DirectoryURL is the CA's ACME directory (Let's Encrypt production
	// by default).
	DirectoryURL string `yaml:"directory_url"`
	// CacheDir holds the account key and certificates with the memory
	// store; with store.backend redis they live in Redis, shared by the
	// nodes.
	CacheDir string `yaml:"cache_dir"`
	// CARootFile is a PEM bundle the CA's directory is verified against
	// (a private CA); empty = the system roots.
	CARootFile string `yaml:"ca_root_file"`
	// HTTPListen answers HTTP-01 challenges and redirects everything
	// else to https://; empty = TLS-ALPN-01 on Listen only.
	HTTPListen string `yaml:"http_listen"`
}

type Store struct {
	Backend string `yaml:"backend"` // memory | redis
	Redis   Redis  `yaml:"redis"`
}

type Redis struct {
	Addrs     []string `yaml:"addrs"`
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"` // secret
	DB        int      `yaml:"db"`
	KeyPrefix string   `yaml:"key_prefix"`
	TLS       bool     `yaml:"tls"`         // TLS to Redis, verified against the system roots
	TLSCAFile string   `yaml:"tls_ca_file"` // or against this CA bundle
	Node      string   `yaml:"node"`        // this node's name; default: host name + random suffix
}

// Roles are the only switches of the four roles: roles.turn runs the
// relay and roles.sfu the SFU (turn.enabled, sfu.enabled and sfu.mode: off
// are deprecated spellings that Load maps here).
type Roles struct {
	Matcher bool `yaml:"matcher"`
	Signal  bool `yaml:"signal"`
	TURN    bool `yaml:"turn"`
	SFU     bool `yaml:"sfu"`
}

type Matcher struct {
	InterestTimeout time.Duration `yaml:"interest_timeout"`
	AvoidRepeat     time.Duration `yaml:"avoid_repeat"`
}

type Signal struct {
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	ChatMaxChars    int           `yaml:"chat_max_chars"`
	ResumeGrace     time.Duration `yaml:"resume_grace"`
	PingInterval    time.Duration `yaml:"ping_interval"`
	// P2PTimeout is the client's budget for ICE before it asks for fallback.
	P2PTimeout time.Duration `yaml:"p2p_timeout"`
	// ICEServers are extra STUN/TURN URLs handed to clients in `matched`
	// (the node's own relay is added by the turn role when enabled).
	ICEServers []string `yaml:"ice_servers"`
	// FaceCheck asks browsers to look for a face in their own camera
	// before a video queue; only the yes/no reaches the node.
	FaceCheck bool `yaml:"face_check"`
	// FaceCheckInterval, with FaceCheck, has the page look again this
	// often during a video call (0: only before a queue).
	// FaceCheckMissing is what it does when the face is gone: warn, or
	// warn_then_leave (the room, after FaceCheckGrace without a face).
	FaceCheckInterval time.Duration `yaml:"face_check_interval"`
	FaceCheckMissing  string        `yaml:"face_check_missing"`
	FaceCheckGrace    time.Duration `yaml:"face_check_grace"`
	// ChatLinks is what happens to a chat holding a link before the
	// strangers have talked for a while (ChatLinksAfter and
	// ChatLinksAfterMessages): allow (relayed as is), plain (relayed
	// flagged, and the page shows it as text nobody can click) or hold
	// (not relayed; the sender gets error link_held).
	ChatLinks string `yaml:"chat_links"`
	// ChatLinksAfter is how long a room must be open, and
	// ChatLinksAfterMessages how many chats each stranger must have sent,
	// before links go through as they are; 0 drops that condition.
	ChatLinksAfter         time.Duration `yaml:"chat_links_after"`
	ChatLinksAfterMessages int           `yaml:"chat_links_after_messages"`
}

type TURN struct {
	// Enabled is the deprecated turn.enabled: Load folds it into
	// Roles.TURN (false turns the relay off), warns, and leaves it nil.
	//
	// Deprecated: set Roles.TURN.
	Enabled   *bool  `yaml:"enabled,omitempty"`
	Realm     string `yaml:"realm"`
	ListenUDP string `yaml:"listen_udp"`
	ListenTCP string `yaml:"listen_tcp"`
	ListenTLS string `yaml:"listen_tls"`
	Secret    string `yaml:"secret"` // secret: mints credentials
	// PreviousSecrets are still accepted, so a secret can be rotated
	// without cutting off credentials minted before the change.
	PreviousSecrets       []string      `yaml:"previous_secrets"` // secret
	CredentialTTL         time.Duration `yaml:"credential_ttl"`
	RelayPortMin          int           `yaml:"relay_port_min"`
	RelayPortMax          int           `yaml:"relay_port_max"`
	AllowedPeerCIDRs      []string      `yaml:"allowed_peer_cidrs"`
	DeniedPeerCIDRs       []string      `yaml:"denied_peer_cidrs"`
	MaxAllocationsPerUser int           `yaml:"max_allocations_per_user"`
	MaxAllocations        int           `yaml:"max_allocations"` // whole node; 0 = no cap
	// MaxAllocationsPerIP caps live allocations from one client address
	// (an IPv6 /limits.ipv6_prefix), whatever sessions it holds; 0 = no cap.
	MaxAllocationsPerIP int `yaml:"max_allocations_per_ip"`
	// TLSCertFile/TLSKeyFile serve turns:; empty = use http's pair.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	Mode        string `yaml:"mode"` // auto | always
	// TCPAuthTimeout: a TCP/TLS connection (TLS handshake included) that
	// has not sent an authenticated request by then is cut.
	TCPAuthTimeout time.Duration `yaml:"tcp_auth_timeout"`
	// TCPConnectionsPerIP caps concurrent TCP/TLS connections from one
	// address (an IPv6 /limits.ipv6_prefix); MaxTCPConnections caps the
	// node. 0 = no cap.
	TCPConnectionsPerIP int `yaml:"tcp_connections_per_ip"`
	MaxTCPConnections   int `yaml:"max_tcp_connections"`
	// OnHTTPSPort: when the node serves HTTPS (http.acme or http's
	// certificate files), TURN over TLS is also answered on http.listen
	// and offered as turns:<name>:<port>, for networks that let only
	// TCP 443 out.
	OnHTTPSPort bool `yaml:"on_https_port"`
}

type SFU struct {
	// Enabled is the deprecated sfu.enabled: Load folds it into
	// Roles.SFU (false turns the SFU off), warns, and leaves it nil.
	//
	// Deprecated: set Roles.SFU.
	Enabled  *bool  `yaml:"enabled,omitempty"`
	ListenIP string `yaml:"listen_ip"`
	UDPPort  int    `yaml:"udp_port"`
	TCPPort  int    `yaml:"tcp_port"`
	// Mode is fallback or always; the deprecated "off" is mapped by
	// Load to Roles.SFU false (and Mode fallback).
	Mode string `yaml:"mode"`
	// TCPConnectionsPerIP and MaxTCPConnections cap the ICE-TCP port's
	// connections per address (IPv6: per limits.ipv6_prefix) and in
	// total; 0 = no cap.
	TCPConnectionsPerIP int `yaml:"tcp_connections_per_ip"`
	MaxTCPConnections   int `yaml:"max_tcp_connections"`
}

// Limits are per-IP and per-session budgets. Rates are events per second;
// bursts are how many may arrive at once (trickle ICE sends dozens).
type Limits struct {
	ConnectionsPerIP   int     `yaml:"connections_per_ip"`  // concurrent sockets per IP
	ConnectRatePerIP   float64 `yaml:"connect_rate_per_ip"` // new sockets per second per IP
	ConnectBurstPerIP  int     `yaml:"connect_burst_per_ip"`
	SessionsPerIP      int     `yaml:"sessions_per_ip"` // live sessions per IP, dropped ones in their resume grace included
	MessageRate        float64 `yaml:"message_rate"`    // all messages, per session
	MessageBurst       int     `yaml:"message_burst"`
	SignalRate         float64 `yaml:"signal_rate"` // offer/answer/candidate, per session
	SignalBurst        int     `yaml:"signal_burst"`
	ChatRate           float64 `yaml:"chat_rate"` // chat, per session
	ChatBurst          int     `yaml:"chat_burst"`
	QueueRate          float64 `yaml:"queue_rate"` // queue/next/report, per session
	QueueBurst         int     `yaml:"queue_burst"`
	JoinsPerMinute     int     `yaml:"joins_per_minute"`    // queue/next per session per minute (skip bots)
	IPJoinsPerMinute   int     `yaml:"ip_joins_per_minute"` // the same for all sessions of one IP
	IPMessageRate      float64 `yaml:"ip_message_rate"`     // all messages, per IP
	IPMessageBurst     int     `yaml:"ip_message_burst"`
	MaxInterests       int     `yaml:"max_interests"`
	MaxInterestChars   int     `yaml:"max_interest_chars"`
	MaxSDPBytes        int     `yaml:"max_sdp_bytes"`
	MaxBufferedSignals int     `yaml:"max_buffered_signals"` // per side of a room, until `ready`
	MaxBufferedBytes   int     `yaml:"max_buffered_bytes"`
	SendQueue          int     `yaml:"send_queue"` // frames queued per socket before it is cut
	// IPv6Prefix is the IPv6 prefix length one client is counted as:
	// every per-address limit, quota and ban keys an IPv6 address by
	// its /IPv6Prefix (a subscriber is routinely handed a whole /64).
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Site is what the page shows a newcomer before the first Start.
type Site struct {
	// Rules is the house rules text (plain text, shown as is); with
	// MinAge, the page asks the user to accept them once, before the
	// first Start, and remembers it in the browser.
	Rules string `yaml:"rules"`
	// MinAge is the minimum age to use the service; 0 = not asked.
	MinAge int `yaml:"min_age"`
}

type Moderation struct {
	ReportsToBan int           `yaml:"reports_to_ban"`
	ReportWindow time.Duration `yaml:"report_window"`
	BanDuration  time.Duration `yaml:"ban_duration"`
	// Shield is the default of the page's on-device nudity shield: off,
	// blur-until-safe or blur-on-detect (users may change it for
	// themselves). The node only counts what shields did.
	Shield string `yaml:"shield"`
	// ShieldReportsToBan, when above 0, bans after this many different
	// sessions reported nudity their shield had flagged (within
	// ReportWindow); 0: such reports count like any other.
	ShieldReportsToBan int `yaml:"shield_reports_to_ban"`
}

// Bots holds what makes automated clients pay or show themselves.
type Bots struct {
	// POW asks every client to solve a proof-of-work challenge before it
	// may queue (issue 17); POWKey signs them and must be the same on
	// every node of a service.
	POW    bool   `yaml:"pow"`
	POWKey string `yaml:"pow_key"` // secret
	// POWExpiry is how long a challenge may be solved and used.
	POWExpiry time.Duration `yaml:"pow_expiry"`
	// POWCost is a challenge's maxnumber for an address that joins
	// rarely; it doubles as the address joins more, up to POWMaxCost.
	POWCost    int `yaml:"pow_cost"`
	POWMaxCost int `yaml:"pow_max_cost"`
	// POWPassJoins and POWPassTTL: one solution lets a session join this
	// many times within this long.
	POWPassJoins int           `yaml:"pow_pass_joins"`
	POWPassTTL   time.Duration `yaml:"pow_pass_ttl"`
}

type Admin struct {
	Token string `yaml:"token"` // secret
}

type Metrics struct {
	// Listen, when set, moves /metrics and /debug/pprof/* off the public
	// HTTP listener onto this address (plain HTTP, its own server).
	Listen string `yaml:"listen"`
	// LockProfile samples lock contention for /debug/pprof/mutex and
	// /debug/pprof/block. Off by default: it costs a little CPU on every
	// contended lock, and the profiles are for chasing a slow node.
	LockProfile bool `yaml:"lock_profile"`
}

type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}
