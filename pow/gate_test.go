package pow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clock is a settable time for the gate and its replay memory.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// seeded is a deterministic randomness source for tests.
type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func newTestGate(t *testing.T, clk *clock, tweak func(*Options)) *Gate {
	t.Helper()
	opt := Options{
		Key: []byte("test key"), Spent: NewMemorySpent(1000, clk.now),
		Cost: 2000, MaxCost: 64000, Now: clk.now,
		Rand: seeded{rand.NewChaCha8([32]byte{1})},
	}
	if tweak != nil {
		tweak(&opt)
	}
	g, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// solved issues a challenge for addr and solves it.
func solved(t *testing.T, g *Gate, addr string) (Challenge, int64, string) {
	t.Helper()
	c, err := g.Issue(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Solve(c)
	if err != nil {
		t.Fatal(err)
	}
	n := numberOf(t, p)
	return c, n, p
}

func numberOf(t *testing.T, payload string) int64 {
	raw, _ := base64.StdEncoding.DecodeString(payload)
	var s struct{ Number int64 }
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s.Number
}

func encodeJSON(v any) string {
	raw, _ := json.Marshal(v)
	return base64.StdEncoding.EncodeToString(raw)
}

func TestAdmit(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		// payload builds what the client sends from a fresh solved
		// challenge; use runs on the gate first (a replay).
		payload func(t *testing.T, g *Gate, clk *clock, c Challenge, n int64, p string) string
		code    string // "" = admitted
		reason  string
	}{
		{"valid", func(_ *testing.T, _ *Gate, _ *clock, _ Challenge, _ int64, p string) string { return p }, "", ""},
		{"no solution, no pass", func(*testing.T, *Gate, *clock, Challenge, int64, string) string { return "" }, CodeRequired, reasonMissing},
		{"expired", func(_ *testing.T, _ *Gate, clk *clock, _ Challenge, _ int64, p string) string {
			clk.t = clk.t.Add(2*time.Minute + time.Second)
			return p
		}, CodeInvalid, reasonExpired},
		{"forged signature", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, n int64, _ string) string {
			c.Signature = strings.Repeat("0", 64)
			return Payload(c, n)
		}, CodeInvalid, reasonSignature},
		{"signed with another key", func(t *testing.T, _ *Gate, clk *clock, _ Challenge, _ int64, _ string) string {
			other := newTestGate(t, clk, func(o *Options) { o.Key = []byte("another key") })
			_, _, p := solved(t, other, "192.0.2.9")
			return p
		}, CodeInvalid, reasonSignature},
		{"own challenge, made up", func(_ *testing.T, _ *Gate, clk *clock, c Challenge, _ int64, _ string) string {
			// A challenge the client made itself: the hash is right, the
			// signature cannot be.
			sum := sha256.Sum256([]byte(c.Salt + "7"))
			c.Challenge = strings.ToLower(strings.TrimSpace(hexOf(sum[:])))
			return Payload(c, 7)
		}, CodeInvalid, reasonSignature},
		{"wrong number", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, n int64, _ string) string {
			return Payload(c, n+1)
		}, CodeInvalid, reasonNumber},
		{"negative number", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, _ int64, _ string) string {
			return Payload(c, -1)
		}, CodeInvalid, reasonMalformed},
		{"fractional number", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, _ int64, _ string) string {
			return encodeJSON(map[string]any{"algorithm": c.Algorithm, "challenge": c.Challenge, "number": 1.5, "salt": c.Salt, "signature": c.Signature})
		}, CodeInvalid, reasonMalformed},
		{"reused", func(t *testing.T, g *Gate, _ *clock, _ Challenge, _ int64, p string) string {
			if err := g.Admit(context.Background(), "someone else", "192.0.2.8", p); err != nil {
				t.Fatalf("first use: %v", err)
			}
			return p
		}, CodeInvalid, reasonReused},
		{"wrong algorithm", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, n int64, _ string) string {
			c.Algorithm = "SHA-1"
			return Payload(c, n)
		}, CodeInvalid, reasonAlgorithm},
		{"not base64", func(*testing.T, *Gate, *clock, Challenge, int64, string) string { return "%%%not base64%%%" }, CodeInvalid, reasonMalformed},
		{"not JSON", func(*testing.T, *Gate, *clock, Challenge, int64, string) string {
			return base64.StdEncoding.EncodeToString([]byte("{\"algorithm\":"))
		}, CodeInvalid, reasonMalformed},
		{"JSON of the wrong shape", func(*testing.T, *Gate, *clock, Challenge, int64, string) string {
			return base64.StdEncoding.EncodeToString([]byte(`["SHA-256"]`))
		}, CodeInvalid, reasonMalformed},
		{"huge", func(*testing.T, *Gate, *clock, Challenge, int64, string) string {
			return strings.Repeat("A", 1<<20)
		}, CodeInvalid, reasonMalformed},
		{"salt without expiry", func(_ *testing.T, g *Gate, _ *clock, c Challenge, _ int64, _ string) string {
			c.Salt = "abc"
			c.Challenge = hashHex(c.Salt, 5)
			c.Signature = g.sig.sign(c.Challenge)
			return Payload(c, 5)
		}, CodeInvalid, reasonMalformed},
		{"expiry stretched past what is issued", func(_ *testing.T, g *Gate, clk *clock, c Challenge, _ int64, _ string) string {
			// Even correctly signed (a leaked key, an old node with a
			// longer expiry), a far expiry would outlive the replay memory.
			c.Salt = "abc?expires=" + strconv.FormatInt(clk.t.Add(time.Hour).Unix(), 10) + "&"
			c.Challenge = hashHex(c.Salt, 5)
			c.Signature = g.sig.sign(c.Challenge)
			return Payload(c, 5)
		}, CodeInvalid, reasonExpired},
		{"digits moved from the number onto the salt", func(_ *testing.T, _ *Gate, _ *clock, c Challenge, n int64, _ string) string {
			// Same hash, same signature; the salt no longer ends its
			// parameters with "&", so its expiry is not believed.
			d := strconv.FormatInt(n, 10)
			if len(d) < 2 {
				d = "0" + d
			}
			c.Salt += d[:1]
			rest, _ := strconv.ParseInt(d[1:], 10, 64)
			return Payload(c, rest)
		}, CodeInvalid, reasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: start}
			g := newTestGate(t, clk, nil)
			c, n, p := solved(t, g, "192.0.2.1")
			err := g.Admit(context.Background(), "s1", "192.0.2.1", tc.payload(t, g, clk, c, n, p))
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("got %v, want a refusal %s", err, tc.code)
			}
			if r.ErrorCode() != tc.code || r.Reason != tc.reason {
				t.Fatalf("got %s/%s (%v), want %s/%s", r.ErrorCode(), r.Reason, err, tc.code, tc.reason)
			}
			if err.Error() == "" {
				t.Fatal("a refusal without words")
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return string(out)
}

// TestPass: one solution buys PassJoins joins within PassTTL, for that
// session only.
func TestPass(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := newTestGate(t, clk, func(o *Options) { o.PassJoins = 3; o.PassTTL = time.Minute })
	ctx := context.Background()
	_, _, p := solved(t, g, "192.0.2.1")
	if err := g.Admit(ctx, "s1", "192.0.2.1", p); err != nil {
		t.Fatal(err)
	}
	if err := g.Admit(ctx, "s2", "192.0.2.1", ""); ReasonOf(err) != reasonMissing {
		t.Fatalf("another session rode on s1's pass: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := g.Admit(ctx, "s1", "192.0.2.1", ""); err != nil {
			t.Fatalf("join %d on the pass: %v", i+2, err)
		}
	}
	if err := g.Admit(ctx, "s1", "192.0.2.1", ""); ReasonOf(err) != reasonMissing {
		t.Fatalf("a fourth join on a pass of three: %v", err)
	}
	_, _, p = solved(t, g, "192.0.2.1")
	if err := g.Admit(ctx, "s1", "192.0.2.1", p); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Minute)
	if err := g.Admit(ctx, "s1", "192.0.2.1", ""); ReasonOf(err) != reasonMissing {
		t.Fatalf("a pass outlived its time: %v", err)
	}
}

// TestCostGrows: an address that asks often pays more, up to MaxCost,
// and its price falls back as its count fades; other addresses are not
// affected.
func TestCostGrows(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := newTestGate(t, clk, func(o *Options) { o.Cost = 1000; o.MaxCost = 16000 })
	price := func(addr string) int64 {
		c, err := g.Issue(addr)
		if err != nil {
			t.Fatal(err)
		}
		return c.MaxNumber
	}
	var got []int64
	for i := 0; i < 60; i++ {
		got = append(got, price("198.51.100.7"))
	}
	if got[0] != 1000 || got[9] != 1000 {
		t.Fatalf("the first joins cost %v, want the base 1000", got[:10])
	}
	if !(got[20] > got[10] && got[30] > got[20]) {
		t.Fatalf("the price did not grow: %v", got)
	}
	if got[59] != 16000 {
		t.Fatalf("the price went to %d, want the cap 16000", got[59])
	}
	if p := price("198.51.100.8"); p != 1000 {
		t.Fatalf("a quiet address pays %d, want 1000", p)
	}
	clk.t = clk.t.Add(time.Hour) // six half-lives: 61 fades below 1
	if p := price("198.51.100.7"); p != 1000 {
		t.Fatalf("after an hour the address pays %d, want 1000", p)
	}
}

// TestCostsBounded: the per-address table never holds more than its
// bound, however many addresses ask.
func TestCostsBounded(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := newTestGate(t, clk, func(o *Options) { o.MaxAddrs = 50 })
	for i := 0; i < 500; i++ {
		g.costs.add("203.0.113."+strconv.Itoa(i), clk.t)
	}
	if n := len(g.costs.scores); n > 50 {
		t.Fatalf("%d addresses kept, bound 50", n)
	}
}

// TestMemorySpentBounded: a full replay memory refuses rather than
// forget a live solution, and frees room as solutions expire.
func TestMemorySpentBounded(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	m := NewMemorySpent(2, clk.now)
	ctx := context.Background()
	until := clk.t.Add(time.Minute)
	for _, k := range []string{"a", "b"} {
		if first, err := m.Spend(ctx, k, until); !first || err != nil {
			t.Fatalf("spend %s: %v %v", k, first, err)
		}
	}
	if first, _ := m.Spend(ctx, "a", until); first {
		t.Fatal("a spent twice")
	}
	if _, err := m.Spend(ctx, "c", until); !errors.Is(err, ErrFull) {
		t.Fatalf("a third live solution: %v, want ErrFull", err)
	}
	clk.t = until
	if first, err := m.Spend(ctx, "c", clk.t.Add(time.Minute)); !first || err != nil {
		t.Fatalf("after expiry: %v %v", first, err)
	}
}

func TestNewRefuses(t *testing.T) {
	clk := &clock{t: time.Now()}
	for _, opt := range []Options{
		{Spent: NewMemorySpent(1, clk.now)},
		{Key: []byte("k")},
		{Key: []byte("k"), Spent: NewMemorySpent(1, clk.now), Cost: 100, MaxCost: 10},
	} {
		if _, err := New(opt); err == nil {
			t.Errorf("New(%+v) accepted", opt)
		}
	}
}

// TestPassJoinsCount: joins made on a pass count towards the address's
// price like challenges asked for, so a pass is no way around it.
func TestPassJoinsCount(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := newTestGate(t, clk, func(o *Options) { o.Cost = 1000; o.MaxCost = 64000; o.PassJoins = 100 })
	ctx := context.Background()
	_, _, p := solved(t, g, "192.0.2.1")
	if err := g.Admit(ctx, "s1", "192.0.2.1", p); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := g.Admit(ctx, "s1", "192.0.2.1", ""); err != nil {
			t.Fatalf("join %d on the pass: %v", i, err)
		}
	}
	c, err := g.Issue("192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxNumber <= 1000*4 {
		t.Fatalf("after 41 joins the next challenge costs %d, want well above the base 1000", c.MaxNumber)
	}
}
