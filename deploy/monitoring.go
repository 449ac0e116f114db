// Package deploy holds the files an operator installs beside the binary.
// Its Go code only reads the monitoring ones, the Grafana dashboard
// (grafana/duet-dashboard.json) and the Prometheus alerting rules
// (prometheus/duet-alerts.yml), so that tests can hold every query they
// make against a running node.
package deploy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed grafana/duet-dashboard.json
var dashboardJSON []byte

//go:embed prometheus/duet-alerts.yml
var alertsYAML []byte

// Query is one PromQL expression and where it comes from.
type Query struct {
	Where string // e.g. `panel "Online" A`, `alert DuetDown`
	Expr  string
}

// DashboardQueries are the expressions of every panel target (rows'
// nested panels included) and of the query variables, Grafana's
// label_values(selector, label) reduced to its selector. Grafana's own
// variables ($job, $__rate_interval) stay as they are.
func DashboardQueries() ([]Query, error) {
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					out = append(out, Query{Where: fmt.Sprintf("panel %q %s", p.Title, t.RefID), Expr: t.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, fmt.Errorf("dashboard variable %s: query is neither a string nor {query}", v.Name)
			}
			q = obj.Query
		}
		expr, ok := variableExpr(q)
		if !ok {
			return nil, fmt.Errorf("dashboard variable %s: cannot read %q", v.Name, q)
		}
		if expr != "" {
			out = append(out, Query{Where: "variable " + v.Name, Expr: expr})
		}
	}
	return out, nil
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var (
	labelValues = regexp.MustCompile(`^label_values\(\s*(?:(.*?)\s*,\s*)?[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)
	queryResult = regexp.MustCompile(`^query_result\((.*)\)$`)
)

// variableExpr is the PromQL in a Grafana Prometheus variable query; ""
// for label_values(label), which names no metric.
func variableExpr(q string) (string, bool) {
	q = strings.TrimSpace(q)
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1], true
	}
	if m := queryResult.FindStringSubmatch(q); m != nil {
		return m[1], true
	}
	return "", false
}

// Alert is one alerting rule as the rules file has it.
type Alert struct {
	Group       string            `yaml:"-"`
	Name        string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Alerts are the rules in prometheus/duet-alerts.yml, in order.
func Alerts() ([]Alert, error) {
	var f struct {
		Groups []struct {
			Name  string  `yaml:"name"`
			Rules []Alert `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(alertsYAML, &f); err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	var out []Alert
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			r.Group = g.Name
			out = append(out, r)
		}
	}
	return out, nil
}

// AlertQueries are the rules' expressions.
func AlertQueries() ([]Query, error) {
	rules, err := Alerts()
	if err != nil {
		return nil, err
	}
	out := make([]Query, 0, len(rules))
	for _, r := range rules {
		out = append(out, Query{Where: "alert " + r.Name, Expr: r.Expr})
	}
	return out, nil
}

// Words of PromQL that look like names and are none: binary-operator
// and modifier keywords, the aggregation operators (which may stand
// before by/without rather than a parenthesis), and number literals.
var (
	labelListKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	}
	keywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"inf": true, "nan": true,
	}
	aggregations = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
		"limitk": true, "limit_ratio": true,
	}
)

// MetricNames are the metric names a PromQL expression selects, each
// once, in order of appearance: every name that is not a function, an
// aggregation, a keyword, a label (inside {…} or a by/on/… list), a
// string, a number or duration, or a Grafana variable ($x, ${x}).
// {__name__="x"} counts as x; a regular expression on __name__ is an
// error, as is an unterminated string, brace or bracket.
func MetricNames(expr string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	s := expr
	i := 0
	// next is the index of the next non-space byte from j.
	next := func(j int) int {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r') {
			j++
		}
		return j
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, name, err := selector(s, i)
			if err != nil {
				return nil, err
			}
			if name != "" {
				add(name)
			}
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ at %d in %q", i, expr)
			}
			i += j + 1
		case c == '$':
			// A Grafana variable: $name or ${name...}.
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d in %q", i, expr)
				}
				i += j + 1
				break
			}
			for i < len(s) && isNameByte(s[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// A number or a duration: 0.95, 1e-3, 0x1f, 5m30s.
			i++
			for i < len(s) {
				if isNameByte(s[i], false) || s[i] == '.' {
					i++
				} else if (s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E') && !strings.HasPrefix(strings.ToLower(s[:i]), "0x") {
					i++
				} else {
					break
				}
			}
		case isNameByte(c, true):
			j := i
			for j < len(s) && isNameByte(s[j], false) {
				j++
			}
			word := s[i:j]
			lower := strings.ToLower(word)
			after := next(j)
			switch {
			case labelListKeywords[lower]:
				if after < len(s) && s[after] == '(' {
					k := strings.IndexByte(s[after:], ')')
					if k < 0 {
						return nil, fmt.Errorf("unterminated %s( at %d in %q", word, after, expr)
					}
					j = after + k + 1
				}
			case keywords[lower] || aggregations[lower]:
			case after < len(s) && s[after] == '(':
				// a function call
			default:
				add(word)
			}
			i = j
		default:
			// operators, parentheses, commas, @
			i++
		}
	}
	return names, nil
}

func isNameByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || !first && c >= '0' && c <= '9'
}

// skipString returns the index just past the string literal at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d in %q", i, s)
}

// selector reads the label matchers at s[i] == '{' and returns the index
// past the closing brace and the metric name a __name__="x" matcher
// gives, if any.
func selector(s string, i int) (int, string, error) {
	name := ""
	j := i + 1
	for {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r' || s[j] == ',') {
			j++
		}
		if j >= len(s) {
			return 0, "", fmt.Errorf("unterminated { at %d in %q", i, s)
		}
		if s[j] == '}' {
			return j + 1, name, nil
		}
		// label op "value"
		k := j
		for k < len(s) && isNameByte(s[k], false) {
			k++
		}
		label := s[j:k]
		for k < len(s) && s[k] == ' ' {
			k++
		}
		op := k
		for k < len(s) && strings.IndexByte("=!~", s[k]) >= 0 {
			k++
		}
		operator := s[op:k]
		for k < len(s) && s[k] == ' ' {
			k++
		}
		if label == "" || operator == "" || k >= len(s) || strings.IndexByte("\"'`", s[k]) < 0 {
			// A bare string is a metric name in newer PromQL: {"x"}.
			if k < len(s) && label == "" && operator == "" && strings.IndexByte("\"'`", s[k]) >= 0 {
				end, err := skipString(s, k)
				if err != nil {
					return 0, "", err
				}
				name = s[k+1 : end-1]
				j = end
				continue
			}
			return 0, "", fmt.Errorf("cannot read the matcher at %d in %q", j, s)
		}
		end, err := skipString(s, k)
		if err != nil {
			return 0, "", err
		}
		if label == "__name__" {
			if operator != "=" {
				return 0, "", fmt.Errorf("__name__%s in %q: a pattern names no metric to check", operator, s)
			}
			name = s[k+1 : end-1]
		}
		j = end
	}
}
