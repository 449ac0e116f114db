package turn

import (
	"testing"
	"time"
)

// An admission whose allocation never appeared stops counting against
// either quota once its reservation lapses, and is forgotten.
func TestAdmitForgetsLapsedReservations(t *testing.T) {
	now := time.Unix(1800000000, 0)
	ac := newAccounting(func() time.Time { return now }, 1, 1)
	a := Username{Expiry: now.Add(time.Hour), User: "a"}
	b := Username{Expiry: now.Add(time.Hour), User: "b"}
	tests := []struct {
		name    string
		advance time.Duration
		u       Username
		ok      bool
		reason  string
	}{
		{"first admission", 0, a, true, ""},
		{"same user while it is pending", time.Second, a, false, "user"},
		{"node cap while it is pending", 0, b, false, "total"},
		{"after the reservation lapsed", reservationTTL, b, true, ""},
		{"the lapsed user again", 0, a, false, "total"},
	}
	for _, tt := range tests {
		now = now.Add(tt.advance)
		ok, reason := ac.admit(tt.u)
		if ok != tt.ok || reason != tt.reason {
			t.Fatalf("%s: admit = %v %q, want %v %q", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
	if _, kept := ac.reserved[a.QuotaKey()]; kept {
		t.Error("the lapsed reservation is still held")
	}
}
