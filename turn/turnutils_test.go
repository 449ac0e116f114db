package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// requireLossFree asserts a uclient run relayed every message it sent.
func requireLossFree(t *testing.T, res uclientResult) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("turnutils_uclient failed: %v", res.err)
	}
	if why := res.LossFree(); why != "" {
		t.Fatal(why)
	}
}

// requireRefused asserts a uclient run was turned away with code.
func requireRefused(t *testing.T, res uclientResult, code string) {
	t.Helper()
	if res.err == nil {
		t.Fatal("turnutils_uclient succeeded, want it refused")
	}
	if !strings.Contains(res.out, "error "+code) {
		t.Fatalf("want a %s error in uclient's output", code)
	}
	if res.Received > 0 {
		t.Fatalf("%d messages came back through a refused relay", res.Received)
	}
}

func TestTurnutilsRelaysWithoutLoss(t *testing.T) {
	cert := selfSigned(t)
	r := startRelay(t, func(o *Options) {
		o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"}
		o.TURN.ListenTLS = "127.0.0.1:0"
		o.TURN.MaxAllocationsPerUser = 100 // parallel runs share a REST username
		o.TURN.MaxAllocationsPerIP = 1000  // ...and the loopback address
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	minted, err := r.creds.Mint("room1", "sess1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"UDP, REST secret", []string{"-W", testSecret, "-e", "127.0.0.1", "-r", peer}},
		{"UDP, send indications", []string{"-W", testSecret, "-s", "-e", "127.0.0.1", "-r", peer}},
		{"TCP, REST secret", []string{"-t", "-W", testSecret, "-e", "127.0.0.1", "-r", peer}},
		{"TLS, REST secret", []string{"-t", "-S", "-W", testSecret, "-e", "127.0.0.1", "-r", peer}},
		{"UDP, duet-minted user and password", []string{"-u", minted.Username, "-w", minted.Password, "-e", "127.0.0.1", "-r", peer}},
		{"UDP, client to client", []string{"-y", "-W", testSecret}},
		{"TCP, client to client", []string{"-y", "-t", "-W", testSecret}},
	}
	t.Run("each", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				res := r.uclient(t, append(tt.args, "-n", "100", "-l", "170", "-z", "5", "-m", "1")...)
				requireLossFree(t, res)
			})
		}
	})
	if got := r.gauge(t, "duet_turn_relayed_packets_total", "to_peer", "udp"); got < 100 {
		t.Errorf("duet_turn_relayed_packets_total{to_peer,udp} = %v, want >= 100", got)
	}
}

func TestTurnutilsRefusals(t *testing.T) {
	r := startRelay(t, func(o *Options) {
		o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"}
		o.TURN.MaxAllocationsPerUser = 1
	})
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	expiredUser := fmt.Sprintf("%d:room:sess", time.Now().Add(-time.Minute).Unix())
	tests := []struct {
		name   string
		args   []string
		code   string
		reason string // auth-failure metric expected to grow
	}{
		{"wrong secret", []string{"-W", "not-the-secret", "-e", "127.0.0.1", "-r", peer}, "400", "bad_password"},
		{"expired credential", []string{"-u", expiredUser, "-w", Password(testSecret, expiredUser), "-e", "127.0.0.1", "-r", peer}, "400", "expired"},
		{"not a REST username", []string{"-u", "alice", "-w", "pw", "-e", "127.0.0.1", "-r", peer}, "400", "malformed"},
		// Four clients under one user: the second allocation is over quota.
		{"over quota", []string{"-W", testSecret, "-m", "4", "-e", "127.0.0.1", "-r", peer}, "486", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0.0
			if tt.reason != "" {
				before = counterValue(t, r.metrics.authFailures.WithLabelValues(tt.reason))
			}
			res := r.uclient(t, append(tt.args, "-n", "20", "-l", "100")...)
			requireRefused(t, res, tt.code)
			if tt.reason != "" {
				if after := counterValue(t, r.metrics.authFailures.WithLabelValues(tt.reason)); after <= before {
					t.Errorf("auth failures{%s} did not grow (%v)", tt.reason, after)
				}
			}
		})
	}
	if got := counterValue(t, r.metrics.quotaRefusals.WithLabelValues("user")); got < 1 {
		t.Errorf("quota refusals{user} = %v, want >= 1", got)
	}
}

func TestTurnutilsSecretRotation(t *testing.T) {
	r := startRelay(t, func(o *Options) {
		o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"}
		o.Secrets = []string{"secret-new", "secret-old"}
	})
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	tests := []struct {
		name, secret string
		tcp, ok      bool
	}{
		{"new secret over UDP", "secret-new", false, true},
		{"old secret over UDP", "secret-old", false, true},
		{"old secret over TCP", "secret-old", true, true},
		{"retired secret", "secret-retired", false, false},
		{"retired secret over TCP", "secret-retired", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-W", tt.secret, "-e", "127.0.0.1", "-r", peer, "-n", "50", "-l", "170"}
			if tt.tcp {
				args = append(args, "-t")
			}
			res := r.uclient(t, args...)
			if tt.ok {
				requireLossFree(t, res)
			} else {
				requireRefused(t, res, "400")
			}
		})
	}
	if cred, _ := r.creds.Mint("r", "s"); cred.Password != Password("secret-new", cred.Username) {
		t.Error("credentials are not minted with the first secret")
	}
}

// Refused peers, through coturn's own client: the relay never opens a
// permission or channel to them.
func TestTurnutilsPeerPolicy(t *testing.T) {
	peer := strconv.Itoa(testtool.StartTURNPeer(t))
	// Each refused run leaves its allocations behind (uclient does not
	// deallocate on error), so room for them all.
	byDefault := startRelay(t, func(o *Options) { o.TURN.MaxAllocationsPerUser, o.TURN.MaxAllocationsPerIP = 100, 1000 })
	for _, ip := range []string{"127.0.0.1", "0.0.0.0", "10.0.0.1", "100.64.0.1", "169.254.1.1", "224.0.0.1"} {
		t.Run(ip+" refused by default", func(t *testing.T) {
			before := counterValue(t, byDefault.metrics.deniedPeers)
			res := byDefault.uclient(t, "-W", testSecret, "-e", ip, "-r", peer, "-n", "5")
			if res.err == nil || !strings.Contains(res.out, "channel bind: error") {
				t.Fatalf("uclient to %s was not refused", ip)
			}
			if counterValue(t, byDefault.metrics.deniedPeers) <= before {
				t.Error("duet_turn_denied_peers_total did not grow")
			}
		})
	}
	t.Run("127.0.0.1 relayed when listed", func(t *testing.T) {
		listed := startRelay(t, func(o *Options) { o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"} })
		requireLossFree(t, listed.uclient(t, "-W", testSecret, "-e", "127.0.0.1", "-r", peer, "-n", "50"))
	})
	t.Run("listed but also denied stays refused", func(t *testing.T) {
		both := startRelay(t, func(o *Options) {
			o.TURN.AllowedPeerCIDRs = []string{"127.0.0.0/8"}
			o.TURN.DeniedPeerCIDRs = []string{"127.0.0.1/32"}
		})
		res := both.uclient(t, "-W", testSecret, "-e", "127.0.0.1", "-r", peer, "-n", "5")
		if res.err == nil || !strings.Contains(res.out, "channel bind: error") {
			t.Fatal("a denied peer was relayed")
		}
	})
}

func TestTurnutilsSTUNBinding(t *testing.T) {
	bin := testtool.Require(t, "turnutils_stunclient")
	r := startRelay(t, nil)
	udp, _, _ := r.Ports()
	out := runTool(t, bin, "-p", strconv.Itoa(udp), "127.0.0.1")
	if !strings.Contains(out, "UDP reflexive addr: 127.0.0.1:") {
		t.Fatalf("no reflexive address in turnutils_stunclient output:\n%s", out)
	}
}

// selfSigned makes a throwaway certificate for turns: on loopback.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "duet test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
