package pow

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzAdmit: whatever arrives as a solution, Admit answers (no panic)
// and never lets it through unless it solves a challenge this gate
// signed; the seeds are one good solution and mangled ones.
func FuzzAdmit(f *testing.F) {
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := newTestGateF(f, clk)
	c, err := g.Issue("192.0.2.1")
	if err != nil {
		f.Fatal(err)
	}
	good, err := Solve(c)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(good)
	f.Add(good)
	f.Add(string(raw))
	f.Add(base64.StdEncoding.EncodeToString(append(raw[:len(raw)-1], ',')))
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"algorithm":"SHA-256","number":1e309}`)))
	f.Add("")
	var calls atomic.Int64 // a session each: no pass carries over
	f.Fuzz(func(t *testing.T, payload string) {
		session := "fuzz" + strconv.FormatInt(calls.Add(1), 10)
		err := g.Admit(context.Background(), session, "192.0.2.2", payload)
		if err == nil && payload != good {
			t.Fatalf("admitted %q", payload)
		}
		if err != nil && ReasonOf(err) == "" && err != ErrFull {
			t.Fatalf("not a refusal: %v", err)
		}
	})
}

// newTestGateF is newTestGate for a fuzz target: a replay memory large
// enough for a long run, and seeded randomness, so every process of the
// fuzzer issues the same challenge (and agrees on the good solution).
func newTestGateF(f *testing.F, clk *clock) *Gate {
	g, err := New(Options{
		Key: []byte("fuzz key"), Spent: NewMemorySpent(1<<20, clk.now), Cost: 500, Now: clk.now,
		Rand: seeded{rand.NewChaCha8([32]byte{2})},
	})
	if err != nil {
		f.Fatal(err)
	}
	return g
}
