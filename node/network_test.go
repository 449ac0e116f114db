package node

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/turn"
)

// syncBuffer is a log destination the node writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNetworkView: the node says, at start and in GET /api/node (admin
// only), what it binds and what it advertises, and whether public_ip is
// an address of this host. 127.0.0.1 is: "local". 203.0.113.7 is not:
// "mapped", onto the default-route address the SFU then gathers from,
// with the warning in words, in the log and in the API.
func TestNetworkView(t *testing.T) {
	route, _, err := turn.RelayIP("")
	if err != nil {
		t.Skipf("this host has no address but loopback: %v", err)
	}
	for _, tc := range []struct {
		name, publicIP, listenIP string
		is, onto, gathers        string
	}{
		{"public_ip local", "127.0.0.1", "", "local", "", "127.0.0.1"},
		{"public_ip not local", "203.0.113.7", "", "mapped", route.String(), route.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.PublicIP, cfg.SFU.ListenIP = tc.publicIP, tc.listenIP
			cfg.Admin.Token = "net-admin"
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, &testWriter{t: t}), nil))
			tn, n := serveNode(t, cfg, log, nil, "/readyz")

			resp := testtool.AdminRequest(t, "GET", tn.url+"/api/node", "", nil)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("/api/node without the token: %d, want 401", resp.StatusCode)
			}
			resp = testtool.AdminRequest(t, "GET", tn.url+"/api/node", "net-admin", nil)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got struct {
				Network NetworkView `json:"network"`
			}
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("/api/node: %d %s (%v)", resp.StatusCode, body, err)
			}
			v := got.Network
			t.Logf("/api/node: %s", body)
			if v.PublicIP != tc.publicIP || v.PublicIPIs != tc.is || v.MappedOnto != tc.onto {
				t.Fatalf("public_ip %q is %q onto %q; want %q is %q onto %q", v.PublicIP, v.PublicIPIs, v.MappedOnto, tc.publicIP, tc.is, tc.onto)
			}
			udp, tcp, _ := n.turn.Ports()
			sudp, stcp := n.sfu.Ports()
			wantTURN := TURNView{
				BindsUDP: net.JoinHostPort("127.0.0.1", strconv.Itoa(udp)), BindsTCP: net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp)),
				RelaysBind: "127.0.0.1:49152-65535", Advertises: tc.publicIP,
			}
			if v.TURN == nil || v.TURN.BindsUDP != wantTURN.BindsUDP || v.TURN.BindsTCP != wantTURN.BindsTCP ||
				v.TURN.RelaysBind != wantTURN.RelaysBind || v.TURN.Advertises != wantTURN.Advertises {
				t.Fatalf("turn %+v, want %+v", v.TURN, wantTURN)
			}
			if !strings.Contains(strings.Join(v.TURN.URLs, " "), "turn:"+net.JoinHostPort(tc.publicIP, strconv.Itoa(udp))+"?transport=udp") {
				t.Errorf("TURN URLs %q do not name public_ip", v.TURN.URLs)
			}
			wantSFU := SFUView{
				BindsUDP: "0.0.0.0:" + strconv.Itoa(sudp), BindsTCP: "0.0.0.0:" + strconv.Itoa(stcp),
				Gathers: tc.gathers, Advertises: tc.publicIP,
			}
			if v.SFU == nil || *v.SFU != wantSFU {
				t.Fatalf("sfu %+v, want %+v", v.SFU, wantSFU)
			}
			// What the SFU really does agrees: its candidates carry the
			// advertised address.
			for _, c := range sfuOwnCandidates(t, tc.publicIP, tc.listenIP) {
				if !strings.Contains(c, " "+tc.publicIP+" ") {
					t.Errorf("the SFU's candidate %q does not carry %s", c, tc.publicIP)
				}
			}

			mapped := "public_ip 203.0.113.7 is not an address of this host: assumed to be mapped 1:1 onto " + route.String() +
				"; if it is not, clients cannot reach this node"
			line := "network: what this node binds and what it advertises"
			if !strings.Contains(logs.String(), line) || !strings.Contains(logs.String(), "public_ip_is="+tc.is) {
				t.Errorf("the start-up log lacks %q with public_ip_is=%s:\n%s", line, tc.is, logs.String())
			}
			if tc.is == "mapped" {
				if len(v.Notes) != 1 || v.Notes[0] != mapped {
					t.Errorf("notes %q, want %q", v.Notes, mapped)
				}
				if !strings.Contains(logs.String(), mapped) {
					t.Errorf("the start-up log does not say %q:\n%s", mapped, logs.String())
				}
			} else if len(v.Notes) != 0 || strings.Contains(logs.String(), "assumed to be mapped") {
				t.Errorf("a local public_ip got notes %q", v.Notes)
			}
		})
	}
}
