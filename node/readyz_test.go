package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/internal/testtool"
)

// TestReadyzHidesInternalAddresses: with the store down, the public
// /readyz says so without the error behind it (which names Redis's
// address); the admin token reads the details.
func TestReadyzHidesInternalAddresses(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "op"
	cfg.Store.Backend = "redis"
	// A port nothing listens on: Redis is down from the start.
	redisAddr := fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))
	cfg.Store.Redis.Addrs = []string{redisAddr}
	n, _ := serveNode(t, cfg, nil, nil, "/healthz")

	for _, tt := range []struct {
		name, auth string
		details    bool
	}{
		{"public", "", false},
		{"wrong token", "Bearer nope", false},
		{"not bearer", "Basic op", false},
		{"admin", "Bearer op", true},
		{"admin, scheme in lower case", "bearer op", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", n.url+"/readyz", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Ready    bool     `json:"ready"`
				Problems []string `json:"problems"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || body.Ready {
				t.Fatalf("/readyz = %d %+v, want 503 not ready", resp.StatusCode, body)
			}
			all := strings.Join(body.Problems, "; ")
			if !strings.Contains(all, "store unreachable") {
				t.Fatalf("problems %q do not say the store is unreachable", all)
			}
			if got := strings.Contains(all, redisAddr); got != tt.details {
				t.Fatalf("problems %q: names %s = %v, want %v", all, redisAddr, got, tt.details)
			}
			if !tt.details && strings.ContainsAny(all, "0123456789") {
				t.Fatalf("public problems %q carry more than what is wrong", all)
			}
		})
	}
}

// TestBearerSchemeAnyCase: the admin API takes the bearer scheme in any
// case (RFC 7235) and one or more spaces before the token; the token
// itself is exact.
func TestBearerSchemeAnyCase(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "Op-Secret"
	n := startNode(t, cfg)
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"Bearer Op-Secret", http.StatusOK},
		{"bearer Op-Secret", http.StatusOK},
		{"BEARER Op-Secret", http.StatusOK},
		{"bEaReR Op-Secret", http.StatusOK},
		{"Bearer  Op-Secret", http.StatusOK},
		{"Bearer op-secret", http.StatusUnauthorized},
		{"Bearer Op-Secret2", http.StatusUnauthorized},
		{"BearerOp-Secret", http.StatusUnauthorized},
		{"Basic Op-Secret", http.StatusUnauthorized},
		{"Op-Secret", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"", http.StatusUnauthorized},
	} {
		t.Run(tt.auth, func(t *testing.T) {
			req, _ := http.NewRequest("GET", n.url+"/api/rooms", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("Authorization %q: %d, want %d", tt.auth, resp.StatusCode, tt.want)
			}
		})
	}
}

// TestReadyAndRedisErrorSeries: the series the alerts watch follow a real
// Redis going away and coming back: duet_ready drops to 0 and Redis
// errors are counted while it is gone, and duet_ready is 1 again after.
func TestReadyAndRedisErrorSeries(t *testing.T) {
	r := testtool.NewRedis(t)
	cfg := testConfig(t)
	cfg.Store.Backend = "redis"
	cfg.Store.Redis.Addrs = []string{r.Addr}
	_, n := serveNode(t, cfg, nil, nil, "/readyz")

	ready := func(want float64) {
		t.Helper()
		got := testtool.Poll(10*time.Second, func() (float64, bool) {
			v := metricValue(t, n, "duet_ready")
			return v, v == want
		})
		if got != want {
			t.Fatalf("duet_ready = %v, want %v", got, want)
		}
	}
	errs := func() float64 {
		return metricValue(t, n, `duet_redis_errors_total{kind="network"}`) +
			metricValue(t, n, `duet_redis_errors_total{kind="timeout"}`)
	}
	ready(1)
	before := errs()
	r.Kill()
	ready(0)
	if after := errs(); after <= before {
		t.Fatalf("Redis errors %v -> %v while Redis was down, want more", before, after)
	}
	r.Start()
	ready(1)
}
