package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/duetchat/duet/turn"
)

// NetworkView is what the node binds and what it tells clients to reach,
// side by side, with whether public_ip is an address of this host: the
// start-up log says it, and GET /api/node (admin) returns it. The usual
// mistake it shows is a public_ip that nothing maps onto this host.
type NetworkView struct {
	// PublicIP is public_ip as configured ("" when unset).
	PublicIP string `json:"public_ip"`
	// PublicIPIs is "local" (an address of this host), "mapped" (not
	// one: assumed to be mapped 1:1 onto MappedOnto, a cloud VM's public
	// address) or "unset" (the default-route address is advertised).
	PublicIPIs string `json:"public_ip_is"`
	// MappedOnto is the local address traffic for a mapped public_ip
	// must arrive on: the default-route address, or sfu.listen_ip.
	MappedOnto string `json:"mapped_onto,omitempty"`
	// DefaultRouteIP is the address of the interface holding the default
	// route ("" when there is none).
	DefaultRouteIP string    `json:"default_route_ip"`
	HTTP           HTTPView  `json:"http"`
	TURN           *TURNView `json:"turn"` // nil when the relay is off
	SFU            *SFUView  `json:"sfu"`  // nil when the SFU is off
	// Notes say in words what an operator should check.
	Notes    []string `json:"notes"`
	warnings []string // the notes the log gives at warn level
}

// HTTPView is the HTTP listener as configured.
type HTTPView struct {
	Binds string `json:"binds"`
}

// TURNView: the relay's listeners, its relay sockets and what it hands
// out.
type TURNView struct {
	BindsUDP   string   `json:"binds_udp,omitempty"`
	BindsTCP   string   `json:"binds_tcp,omitempty"`
	BindsTLS   string   `json:"binds_tls,omitempty"`
	RelaysBind string   `json:"relays_bind"` // relay sockets: address and port range
	Advertises string   `json:"advertises"`  // the address in relay candidates and TURN URLs
	URLs       []string `json:"urls"`
}

// SFUView: the SFU's two ports, the one address its candidates are
// gathered from and the one they carry.
type SFUView struct {
	BindsUDP   string `json:"binds_udp"`
	BindsTCP   string `json:"binds_tcp"`
	Gathers    string `json:"gathers"`
	Advertises string `json:"advertises"` // on both ports
}

// bindAddr is host:port of a listener configured as listen ("" or an
// unspecified host: every address) that got port.
func bindAddr(listen string, port int) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// hostHas reports whether a is an address of one of this host's
// interfaces.
func hostHas(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if h, ok := netip.AddrFromSlice(n.IP); ok && h.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// network builds the node's NetworkView from its config and the roles
// it started.
func (n *Node) network() NetworkView {
	cfg := n.cfg
	v := NetworkView{PublicIP: cfg.PublicIP, HTTP: HTTPView{Binds: cfg.HTTP.Listen}, Notes: []string{}}
	if ip, _, err := turn.RelayIP(""); err == nil {
		v.DefaultRouteIP = ip.String()
	}
	if n.turn != nil {
		udp, tcp, tls := n.turn.Ports()
		t := &TURNView{}
		if udp != 0 {
			t.BindsUDP = bindAddr(cfg.TURN.ListenUDP, udp)
		}
		if tcp != 0 {
			t.BindsTCP = bindAddr(cfg.TURN.ListenTCP, tcp)
		}
		if tls != 0 {
			t.BindsTLS = bindAddr(cfg.TURN.ListenTLS, tls)
		}
		// The relay sockets bind where the UDP listener does (turn.Server).
		relayHost, _, _ := net.SplitHostPort(bindAddr(cfg.TURN.ListenUDP, 0))
		t.RelaysBind = fmt.Sprintf("%s:%d-%d", relayHost, cfg.TURN.RelayPortMin, cfg.TURN.RelayPortMax)
		stun, turnURLs := n.turn.URLs()
		t.URLs = append(stun, turnURLs...)
		if ip, _, err := turn.RelayIP(cfg.PublicIP); err == nil {
			t.Advertises = ip.String()
		}
		v.TURN = t
	}
	var sfuGather netip.Addr
	if n.sfu != nil {
		udp, tcp := n.sfu.Ports()
		bind, gather, adv := n.sfu.Addrs()
		s := &SFUView{
			BindsUDP: netip.AddrPortFrom(bind, uint16(udp)).String(), //nolint:gosec // a bound port
			BindsTCP: netip.AddrPortFrom(bind, uint16(tcp)).String(), //nolint:gosec // a bound port
			Gathers:  gather.String(), Advertises: adv.String(),
		}
		sfuGather = gather
		v.SFU = s
	}

	public, perr := netip.ParseAddr(cfg.PublicIP)
	switch {
	case cfg.PublicIP == "" || perr != nil:
		v.PublicIPIs = "unset"
		if d, err := netip.ParseAddr(v.DefaultRouteIP); err == nil && !publicAddr(d) {
			v.warn(fmt.Sprintf("public_ip is empty: the relay and the SFU advertise %s, the default-route address, which is not a public address: "+
				"clients outside its network cannot reach them; set public_ip to the address clients reach this node on", d))
		}
	case hostHas(public):
		v.PublicIPIs = "local"
	default:
		v.PublicIPIs = "mapped"
		v.MappedOnto = v.DefaultRouteIP
		if sfuGather.IsValid() {
			v.MappedOnto = sfuGather.String()
		}
		onto := v.MappedOnto
		if onto == "" {
			onto = "this host (no default route found)"
		}
		v.note(fmt.Sprintf("public_ip %s is not an address of this host: assumed to be mapped 1:1 onto %s; if it is not, clients cannot reach this node", public, onto))
		if sfuGather.IsValid() && v.DefaultRouteIP != "" && sfuGather.String() != v.DefaultRouteIP {
			v.warn(fmt.Sprintf("sfu.listen_ip %s is not the default-route address %s: the SFU is reachable on public_ip only if the mapping lands on %s", sfuGather, v.DefaultRouteIP, sfuGather))
		}
	}
	return v
}

// publicAddr: a global unicast address in no private or shared (CGNAT)
// range, one that clients elsewhere could reach.
func publicAddr(a netip.Addr) bool {
	return a.IsGlobalUnicast() && !a.IsPrivate() && !netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

func (v *NetworkView) note(s string) { v.Notes = append(v.Notes, s) }

func (v *NetworkView) warn(s string) {
	v.Notes = append(v.Notes, s)
	v.warnings = append(v.warnings, s)
}

// logNetwork writes the view at start: one line of what is bound and
// what is advertised, then each note (warnings at warn level).
func logNetwork(log *slog.Logger, v NetworkView) {
	attrs := []any{"http_binds", v.HTTP.Binds, "public_ip", v.PublicIP, "public_ip_is", v.PublicIPIs}
	if v.MappedOnto != "" {
		attrs = append(attrs, "mapped_onto", v.MappedOnto)
	}
	if t := v.TURN; t != nil {
		attrs = append(attrs, "turn_binds_udp", t.BindsUDP, "turn_binds_tcp", t.BindsTCP,
			"turn_relays_bind", t.RelaysBind, "turn_advertises", t.Advertises)
	}
	if s := v.SFU; s != nil {
		attrs = append(attrs, "sfu_binds_udp", s.BindsUDP, "sfu_binds_tcp", s.BindsTCP,
			"sfu_gathers", s.Gathers, "sfu_advertises", s.Advertises)
	}
	log.Info("network: what this node binds and what it advertises", attrs...)
	for _, s := range v.Notes {
		if slices.Contains(v.warnings, s) {
			log.Warn(s)
		} else {
			log.Info(s)
		}
	}
}

// apiNode answers GET /api/node (admin): the node's NetworkView, read
// afresh (interface addresses can change while it runs).
func (n *Node) apiNode(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"network": n.network()})
}
