package node

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/deploy"
	"github.com/duetchat/duet/internal/testtool"
)

// Series Prometheus makes itself rather than reading them off /metrics.
var prometheusOwn = map[string]bool{"up": true}

// Series only a node on the Redis store exports.
func redisOnly(name string) bool {
	return strings.HasPrefix(name, "duet_redis_") || name == "duet_cluster_dropped_total" ||
		name == "duet_matcher_wakeups_total"
}

// monitoredNames are the metric names the dashboard's queries and the
// alerting rules select, each with where it is used.
func monitoredNames(t *testing.T) map[string][]string {
	t.Helper()
	dash, err := deploy.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := deploy.AlertQueries()
	if err != nil {
		t.Fatal(err)
	}
	if len(dash) < 20 || len(alerts) < 10 {
		t.Fatalf("only %d dashboard queries and %d alerts read", len(dash), len(alerts))
	}
	names := map[string][]string{}
	for _, q := range append(dash, alerts...) {
		ns, err := deploy.MetricNames(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		if len(ns) == 0 && !strings.HasPrefix(q.Where, "variable") {
			t.Errorf("%s selects no metric: %q", q.Where, q.Expr)
		}
		for _, n := range ns {
			names[n] = append(names[n], q.Where)
		}
	}
	return names
}

// exposed are the metric and sample names on a node's /metrics: every
// family a # TYPE line announces and every sample's name (histograms'
// _bucket, _sum and _count among them).
func exposed(t *testing.T, base string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, _, ok := strings.Cut(rest, " "); ok {
				out[name] = true
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exercise makes a node show the series that appear with their first
// label value: a video match (rooms, match latency, matcher wake-ups) and
// a WebSocket refused for its origin.
func exercise(t *testing.T, n *testNode) {
	t.Helper()
	a, b := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	pair(t, a, b, "video")
	_, resp, err := websocket.DefaultDialer.Dial(n.ws, http.Header{"Origin": {"https://elsewhere.example"}})
	if err == nil {
		t.Fatal("a WebSocket from another origin was accepted")
	}
	if resp != nil {
		resp.Body.Close()
	}
}

// TestMonitoringMetricsExist: every metric the Grafana dashboard and the
// Prometheus alerting rules in deploy/ query is one a real node exports,
// on the memory store and (for the Redis series) on Redis. A renamed
// metric or a typo in a query fails here instead of drawing an empty
// panel or an alert that can never fire.
func TestMonitoringMetricsExist(t *testing.T) {
	names := monitoredNames(t)
	check := func(t *testing.T, cfg *configs.Config, skip func(string) bool) {
		n := startNode(t, cfg)
		exercise(t, n)
		have := exposed(t, n.url)
		var missing []string
		for name, where := range names {
			if prometheusOwn[name] || skip(name) {
				continue
			}
			if !have[name] {
				missing = append(missing, name+" (in "+strings.Join(where, ", ")+")")
			}
		}
		slices.Sort(missing)
		for _, m := range missing {
			t.Errorf("not on /metrics: %s", m)
		}
	}
	t.Run("memory", func(t *testing.T) {
		check(t, testConfig(t), redisOnly)
	})
	t.Run("redis", func(t *testing.T) {
		cfg := redisConfig(t, testtool.StartRedis(t), "monitoring")
		cfg.Roles.TURN = true
		check(t, cfg, func(string) bool { return false })
	})
}

// TestFaviconServed: the icon browsers ask for unprompted is there.
func TestFaviconServed(t *testing.T) {
	n := startNode(t, testConfig(t))
	for path, ct := range map[string]string{"/favicon.ico": "image/x-icon", "/favicon.svg": "image/svg+xml"} {
		resp, err := http.Get(n.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct || len(body) == 0 {
			t.Errorf("GET %s = %d, %q, %d bytes; want 200, %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ct)
		}
	}
}
