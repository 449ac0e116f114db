package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/duetchat/duet/internal/testtool"
)

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`duet_sessions`: {"duet_sessions"},
		`sum by (mode) (rate(duet_matches_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))`: {"duet_matches_total"},
		`histogram_quantile(0.95, sum by (mode, le) (rate(duet_match_latency_seconds_bucket[10m]))) > 30
		  and on (mode) sum by (mode) (rate(duet_matches_total[10m])) > 0.05`: {"duet_match_latency_seconds_bucket", "duet_matches_total"},
		`sum without (instance) (a) / ignoring(kind) group_left(mode, path) b unless on() c or bool d`: {"a", "b", "c", "d"},
		`sum(x) by (le)`:                                         {"x"},
		`max(x{path!="p2p", re=~"a}b|c\"d"})`:                    {"x"},
		`label_replace(up, "dst", "$1", "src", "(.*)")`:          {"up"},
		`8 * rate(x[5m:1m] offset 1h) + 1e-3 - 0x1F + Inf * NaN`: {"x"},
		`{__name__="duet_waiting", mode="video"}`:                {"duet_waiting"},
		`{"duet_waiting", mode="video"}`:                         {"duet_waiting"},
		`rule:duet_sessions:sum # a comment naming not_a_metric`: {"rule:duet_sessions:sum"},
		`count_values("v", topk(5, x)) @ start()`:                {"x"},
		`x{a="${job}"} and ${__rate_interval} and $job`:          {"x"},
		`vector(1) + time()`:                                     nil,
		`duet_sessions + duet_sessions`:                          {"duet_sessions"},
	} {
		got, err := MetricNames(expr)
		if err != nil {
			t.Errorf("MetricNames(%q): %v", expr, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("MetricNames(%q) = %q, want %q", expr, got, want)
		}
	}
	for _, bad := range []string{`x{a="b}`, `x{a="b"`, `rate(x[5m)`, `{__name__=~"duet_.*"}`, `x{a}`} {
		if got, err := MetricNames(bad); err == nil {
			t.Errorf("MetricNames(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDashboard: the JSON imports into Grafana as it is: a uid, a
// Prometheus data-source variable every panel and query variable uses,
// distinct panel ids, and a query in every panel that is not a row.
func TestDashboard(t *testing.T) {
	var d map[string]any
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		t.Fatal(err)
	}
	if d["uid"] == "" || d["title"] == "" {
		t.Error("dashboard without uid or title")
	}
	if _, ok := d["__inputs"]; ok {
		t.Error("dashboard has __inputs: use the datasource variable instead")
	}
	vars := d["templating"].(map[string]any)["list"].([]any)
	var dsVar bool
	for _, v := range vars {
		v := v.(map[string]any)
		if v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource" {
			dsVar = true
		}
		if v["type"] == "query" {
			checkDatasource(t, "variable "+v["name"].(string), v["datasource"])
		}
	}
	if !dsVar {
		t.Fatal("no datasource variable of type prometheus named datasource")
	}
	ids := map[float64]bool{}
	var walk func([]any)
	walk = func(ps []any) {
		for _, p := range ps {
			p := p.(map[string]any)
			title, _ := p["title"].(string)
			id, _ := p["id"].(float64)
			if id == 0 || ids[id] {
				t.Errorf("panel %q: id %v missing or repeated", title, p["id"])
			}
			ids[id] = true
			if p["gridPos"] == nil {
				t.Errorf("panel %q has no gridPos", title)
			}
			if p["type"] == "row" {
				if sub, ok := p["panels"].([]any); ok {
					walk(sub)
				}
				continue
			}
			checkDatasource(t, "panel "+title, p["datasource"])
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("panel %q has no query", title)
			}
			for _, tg := range targets {
				tg := tg.(map[string]any)
				checkDatasource(t, "panel "+title+" target", tg["datasource"])
				if e, _ := tg["expr"].(string); strings.TrimSpace(e) == "" {
					t.Errorf("panel %q: target %v has no expr", title, tg["refId"])
				}
			}
		}
	}
	walk(d["panels"].([]any))
}

func checkDatasource(t *testing.T, where string, ds any) {
	t.Helper()
	m, _ := ds.(map[string]any)
	if m["type"] != "prometheus" || m["uid"] != "${datasource}" {
		t.Errorf("%s: datasource %v, want {type: prometheus, uid: ${datasource}}", where, ds)
	}
}

// TestAlertRules: every rule waits before firing and tells the operator
// what it means and what to check.
func TestAlertRules(t *testing.T) {
	rules, err := Alerts()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("no alerting rules")
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Name == "" || seen[r.Name] {
			t.Errorf("rule %q in %s: missing or repeated name", r.Name, r.Group)
		}
		seen[r.Name] = true
		if r.For == "" {
			t.Errorf("%s: no for: duration", r.Name)
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Name, s)
		}
		if len(r.Annotations["summary"]) < 10 || len(r.Annotations["description"]) < 40 {
			t.Errorf("%s: summary or description missing or too short to say what to check", r.Name)
		}
	}
}

// TestPromtool: promtool accepts the rules, their unit tests pass
// (prometheus/duet-alerts_test.yml), and every dashboard query parses
// (as a recording rule, Grafana's variables given values).
func TestPromtool(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", "duet-alerts.yml")
	run("test", "rules", "duet-alerts_test.yml")

	queries, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rs []rule
	for i, q := range queries {
		rs = append(rs, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: grafana.Replace(q.Expr)})
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "rules", file)
}
