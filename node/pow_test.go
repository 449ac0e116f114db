package node

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/pow"
)

// withPOW turns the gate on with cheap challenges (a test solves them in
// a few milliseconds) and a pass of two joins.
func withPOW(cfg *configs.Config) *configs.Config {
	cfg.Bots.POW = true
	cfg.Bots.POWKey = "node-test-pow-key"
	cfg.Bots.POWCost, cfg.Bots.POWMaxCost = 2000, 4000
	cfg.Bots.POWPassJoins = 2
	return cfg
}

// solveFrom asks the node at base for a challenge and solves it.
func solveFrom(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/pow/challenge")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/pow/challenge: HTTP %d", resp.StatusCode)
	}
	var c pow.Challenge
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatalf("challenge: %v", err)
	}
	if c.Algorithm != "SHA-256" || c.MaxNumber != 2000 || len(c.Challenge) != 64 || c.Signature == "" {
		t.Fatalf("challenge %+v", c)
	}
	p, err := pow.Solve(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// forge keeps a solution's shape and changes its signature.
func forge(t *testing.T, payload string) string {
	t.Helper()
	raw, _ := base64.StdEncoding.DecodeString(payload)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["signature"] = strings.Repeat("ab", 32)
	raw, _ = json.Marshal(m)
	return base64.StdEncoding.EncodeToString(raw)
}

// TestPOWGate: with bots.pow on, a join without a solution is refused
// with pow_required, a solved challenge queues and buys a pass (next
// goes through on it until it runs out), and a reused or forged solution
// is refused with pow_invalid. The refused stay idle and connected.
func TestPOWGate(t *testing.T) {
	cfg := withPOW(noSFU(testConfig(t)))
	cfg.Matcher.AvoidRepeat = 0 // the same two meet again after next
	n := startNode(t, cfg)
	a := dial(t, n.ws, "a", nil)
	if f, _ := a.welcome["features"].(map[string]any); f["pow"] != true {
		t.Fatalf("welcome.features = %v, want pow: true", a.welcome["features"])
	}
	a.send(map[string]any{"type": "queue", "mode": "text"})
	a.expectError(pow.CodeRequired, "queue")
	// Still idle: cancel is the wrong state, and the socket is open.
	a.send(map[string]any{"type": "cancel"})
	a.expectError("wrong_state", "cancel")

	paid := solveFrom(t, n.url)
	a.send(map[string]any{"type": "queue", "mode": "text", "pow": paid})
	a.expect("queued")

	b := dial(t, n.ws, "b", nil)
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": paid})
	b.expectError(pow.CodeInvalid, "queue")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": forge(t, solveFrom(t, n.url))})
	b.expectError(pow.CodeInvalid, "queue")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": "not a solution"})
	b.expectError(pow.CodeInvalid, "queue")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": 7})
	b.expectError("bad_request", "queue")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": solveFrom(t, n.url)})
	b.expect("queued")
	a.expect("matched")
	b.expect("matched")

	// a's pass holds two joins: the queue above and this next.
	a.send(map[string]any{"type": "next"})
	a.expect("queued")
	b.expect("peer_left")
	b.send(map[string]any{"type": "next"})
	b.expect("queued")
	a.expect("matched")
	b.expect("matched")
	// The third join needs a new solution: refused, and the room is over
	// as next promises.
	a.send(map[string]any{"type": "next"})
	a.expectError(pow.CodeRequired, "next")
	b.expect("peer_left")
	a.send(map[string]any{"type": "next", "pow": solveFrom(t, n.url)})
	a.expect("queued")

	// The node counted all of it, by reason.
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`duet_pow_refused_total{reason="missing"} 2`, `duet_pow_refused_total{reason="reused"} 1`,
		`duet_pow_refused_total{reason="signature"} 1`, `duet_pow_refused_total{reason="malformed"} 1`,
		"duet_pow_admitted_total 5", "duet_pow_challenges_total 4",
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// TestPOWChallengeRateLimited: one address asking for challenges in a
// loop is turned away with 429 in the protocol's error shape; another
// address (named by a trusted proxy, as on /ws) is not.
func TestPOWChallengeRateLimited(t *testing.T) {
	cfg := withPOW(noSFU(testConfig(t)))
	cfg.HTTP.TrustedProxies = []string{"127.0.0.1/32"}
	n := startNode(t, cfg)
	from := func(ip string) (int, msg) {
		req, _ := http.NewRequest("GET", n.url+"/api/pow/challenge", nil)
		req.Header.Set("X-Forwarded-For", ip)
		return doJSON(t, req)
	}
	limited := 0
	for i := 0; i < 20 && limited == 0; i++ {
		code, m := from("198.51.100.1")
		switch code {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			if m.str("code") != "rate_limited" || m.str("message") == "" {
				t.Fatalf("429 body %v", m)
			}
		default:
			t.Fatalf("HTTP %d: %v", code, m)
		}
	}
	if limited == 0 {
		t.Fatal("20 challenges in a row were all handed out")
	}
	if code, m := from("198.51.100.2"); code != http.StatusOK {
		t.Fatalf("another address: HTTP %d %v", code, m)
	}
}

// TestPOWOff: by default there is no gate and no endpoint.
func TestPOWOff(t *testing.T) {
	n := startNode(t, noSFU(testConfig(t)))
	a := dial(t, n.ws, "a", nil)
	if f, _ := a.welcome["features"].(map[string]any); f["pow"] != false {
		t.Fatalf("welcome.features = %v, want pow: false", a.welcome["features"])
	}
	if code, _ := getJSON(t, n.url+"/api/pow/challenge"); code != http.StatusNotFound {
		t.Fatalf("challenge endpoint with pow off: HTTP %d", code)
	}
	a.send(map[string]any{"type": "queue", "mode": "text"})
	a.expect("queued")
}

// TestPOWAcrossNodes: on a shared Redis, a challenge of node 1 is good on
// node 2 (one key), and a solution spent on node 1 is refused on node 2.
func TestPOWAcrossNodes(t *testing.T) {
	addr := testtool.StartRedis(t)
	nodes := startNodesWith(t, addr, func(cfg *configs.Config) { withPOW(noSFU(cfg)) }, "n1", "n2")
	a := dial(t, nodes[0].ws, "a", nil)
	b := dial(t, nodes[1].ws, "b", nil)
	paid := solveFrom(t, nodes[0].url)
	a.send(map[string]any{"type": "queue", "mode": "text", "pow": paid})
	a.expect("queued")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": paid})
	b.expectError(pow.CodeInvalid, "queue")
	b.send(map[string]any{"type": "queue", "mode": "text", "pow": solveFrom(t, nodes[0].url)})
	b.expect("queued")
	a.expect("matched")
	b.expect("matched")
}
