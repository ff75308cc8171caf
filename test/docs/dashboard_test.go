package docs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardPath = "../../docs/grafana/hangup-dashboard.json"

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// promqlWords are the PromQL functions, aggregations and keywords the
// dashboard may use; any other identifier outside braces, strings and
// label lists (by, without, on, ...) is taken for a metric name.
var promqlWords = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "topk": true, "bottomk": true,
	"rate": true, "irate": true, "increase": true, "delta": true, "deriv": true,
	"histogram_quantile": true, "clamp_min": true, "clamp_max": true, "abs": true, "vector": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "offset": true, "bool": true,
	"label_values": true, // Grafana's variable query function
}

var (
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}`)
	matcherRE  = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*$`)
	groupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	rangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	varRE      = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	numberRE   = regexp.MustCompile(`\b\d+(\.\d+)?(e[+-]?\d+)?\b`)
)

// dashboard is the part of the Grafana JSON model the checks read.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"` // a string, or {"query": "..."}
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// promQL is one expression of the dashboard and where it is.
type promQL struct{ where, expr string }

// exprUse is what one expression names: metric series and, per series,
// the labels it matches on; and the labels it groups by.
type exprUse struct {
	series   []string
	matchers map[string][]string // series → label names
	grouping []string
}

// parsePromQL extracts series, matchers and grouping labels. It is no full
// PromQL parser: it knows selectors, by/without lists, ranges and strings,
// which is all the dashboard uses, and fails on what it cannot place.
func parsePromQL(expr string) (exprUse, error) {
	u := exprUse{matchers: map[string][]string{}}
	rest := selectorRE.ReplaceAllStringFunc(expr, func(sel string) string {
		m := selectorRE.FindStringSubmatch(sel)
		name, body := m[1], m[2]
		var labels []string
		if strings.TrimSpace(body) != "" {
			for _, part := range splitMatchers(body) {
				mm := matcherRE.FindStringSubmatch(part)
				if mm == nil {
					labels = append(labels, "!bad matcher "+part)
					continue
				}
				labels = append(labels, mm[1])
			}
		}
		if name != "" {
			u.series = append(u.series, name)
			u.matchers[name] = append(u.matchers[name], labels...)
		}
		return " "
	})
	for _, ls := range u.matchers {
		for _, l := range ls {
			if strings.HasPrefix(l, "!bad matcher ") {
				return u, fmt.Errorf("cannot read label matcher %q", strings.TrimPrefix(l, "!bad matcher "))
			}
		}
	}
	rest = groupingRE.ReplaceAllStringFunc(rest, func(g string) string {
		for _, l := range strings.Split(groupingRE.FindStringSubmatch(g)[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				u.grouping = append(u.grouping, l)
			}
		}
		return " "
	})
	rest = rangeRE.ReplaceAllString(stringRE.ReplaceAllString(rest, " "), " ")
	rest = numberRE.ReplaceAllString(rest, " ")
	for _, id := range identRE.FindAllString(rest, -1) {
		if !promqlWords[id] {
			u.series = append(u.series, id)
		}
	}
	return u, nil
}

// splitMatchers splits a selector's body at the commas outside strings.
func splitMatchers(body string) []string {
	var parts []string
	var cur strings.Builder
	inStr, esc := false, false
	for _, r := range body {
		switch {
		case esc:
			esc = false
		case inStr && r == '\\':
			esc = true
		case r == '"':
			inStr = !inStr
		case r == ',' && !inStr:
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	if strings.TrimSpace(cur.String()) != "" {
		parts = append(parts, cur.String())
	}
	return parts
}

func loadDashboard(t *testing.T) (dashboard, []promQL) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid dashboard JSON: %v", dashboardPath, err)
	}
	var exprs []promQL
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			exprs = append(exprs, promQL{fmt.Sprintf("panel %q target %d", p.Title, i), tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		// label_values(selector, label): the selector is PromQL, the
		// label must be one of its metric's.
		inner := strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")")
		i := strings.LastIndex(inner, ",")
		if !strings.HasPrefix(q, "label_values(") || i < 0 {
			t.Errorf("variable %s: query %q, want label_values(metric{...}, label)", v.Name, q)
			continue
		}
		sel, label := inner[:i], strings.TrimSpace(inner[i+1:])
		exprs = append(exprs, promQL{"variable " + v.Name, fmt.Sprintf("sum by (%s) (%s)", label, sel)})
	}
	return d, exprs
}

// TestDashboardMetricsExist checks every PromQL expression of the dashboard
// (panel targets and variable queries) against the metrics the sidecar
// exports: each series must exist, each label it matches on or groups by
// must be one of its metric's labels (or job / instance, which Prometheus
// adds), and every exported hangup metric must be on the dashboard.
func TestDashboardMetricsExist(t *testing.T) {
	fams := inProcessFamilies(t)
	seriesOf := map[string]string{} // series name → family name
	for name, f := range fams {
		for _, s := range f.series(name) {
			seriesOf[s] = name
		}
	}
	_, exprs := loadDashboard(t)
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no PromQL")
	}
	used := map[string]bool{}
	for _, e := range exprs {
		t.Run(e.where, func(t *testing.T) {
			u, err := parsePromQL(e.expr)
			if err != nil {
				t.Fatalf("%s: %v", e.expr, err)
			}
			if len(u.series) == 0 {
				t.Fatalf("%s names no metric", e.expr)
			}
			groupable := map[string]bool{"job": true, "instance": true}
			for _, s := range u.series {
				fam, ok := seriesOf[s]
				if !ok {
					t.Errorf("%s: the sidecar exports no series %q (it exports %v)", e.expr, s, sortedKeys(seriesOf))
					continue
				}
				used[fam] = true
				f := fams[fam]
				for l := range f.labels {
					groupable[l] = true
				}
				if f.typ == "histogram" && strings.HasSuffix(s, "_bucket") {
					groupable["le"] = true
				}
				for _, l := range u.matchers[s] {
					if !f.labels[l] && !targetLabels[l] {
						t.Errorf("%s: %s has no label %q (it has %v)", e.expr, s, l, sortedKeys(f.labels))
					}
				}
			}
			for _, l := range u.grouping {
				if !groupable[l] {
					t.Errorf("%s: groups by %q, a label none of its metrics has", e.expr, l)
				}
			}
		})
	}
	for name := range fams {
		if strings.HasPrefix(name, "hangup_") && !used[name] {
			t.Errorf("the sidecar exports %s but the dashboard does not show it", name)
		}
	}
}

// TestDashboardShape checks what Grafana's import needs and what keeps the
// panels apart: a title and uid, unique panel ids, a grid position for
// every panel, the Prometheus datasource variable on every query panel, and
// only defined variables in expressions.
func TestDashboardShape(t *testing.T) {
	d, exprs := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: want both set", d.Title, d.UID)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be tied to one Grafana's datasource uid")
	}
	ids := map[int]string{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v, want w and h set within 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	for _, e := range exprs {
		for _, m := range varRE.FindAllStringSubmatch(e.expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: %s uses $%s, which is no dashboard variable (have %v)", e.where, e.expr, m[1], sortedKeys(vars))
			}
		}
	}
}

// TestParsePromQL keeps the checker honest: it must see metrics in every
// position the dashboard uses and reject what it cannot read.
func TestParsePromQL(t *testing.T) {
	tests := []struct {
		name     string
		expr     string
		series   []string
		grouping []string
		wantErr  bool
	}{
		{name: "bare metric", expr: "hangup_streams_active", series: []string{"hangup_streams_active"}},
		{name: "selector and range", expr: `sum(rate(hangup_x_total{job=~"$job", reason="a,b}"}[5m]))`, series: []string{"hangup_x_total"}},
		{name: "grouping", expr: `sum by (le, reason) (rate(a_bucket{x="1"}[1m])) / on(job) b`, series: []string{"a_bucket", "b"}, grouping: []string{"le", "reason", "job"}},
		{name: "quantile number", expr: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))`, series: []string{"h_bucket"}, grouping: []string{"le"}},
		{name: "typo in a metric", expr: `sum(hangup_disconects_total)`, series: []string{"hangup_disconects_total"}},
		{name: "bad matcher", expr: `a{job~"x"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := parsePromQL(tc.expr)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsePromQL(%q) = %+v, want an error", tc.expr, u)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(u.series)
			if !slices.Equal(u.series, tc.series) || !slices.Equal(u.grouping, tc.grouping) {
				t.Errorf("parsePromQL(%q): series %v grouping %v, want %v and %v", tc.expr, u.series, u.grouping, tc.series, tc.grouping)
			}
		})
	}
}

// TestMetricsPageListsEveryMetric checks that docs/metrics.md has a table
// row for every metric the sidecar exports, naming each of its labels, and
// no row for a metric it does not export.
func TestMetricsPageListsEveryMetric(t *testing.T) {
	fams := inProcessFamilies(t)
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // metric → its table row
	rowRE := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|(.*)$")
	for _, m := range rowRE.FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = m[2]
	}
	for name, f := range fams {
		t.Run(name, func(t *testing.T) {
			row, ok := rows[name]
			if !ok && isRuntimeMetric(name) {
				// The standard collectors' series are described together
				// in one paragraph, not one row each.
				return
			}
			if !ok {
				t.Fatalf("docs/metrics.md has no table row for %s", name)
			}
			if !strings.HasPrefix(row, " "+f.typ+" |") {
				t.Errorf("row of %s does not give its type %s: %s", name, f.typ, row)
			}
			for l := range f.labels {
				if !strings.Contains(row, "`"+l+"`") {
					t.Errorf("row of %s does not name its label %s: %s", name, l, row)
				}
			}
		})
	}
	for name := range rows {
		if _, ok := fams[name]; !ok {
			t.Errorf("docs/metrics.md lists %s, which the sidecar does not export", name)
		}
	}
}

// isRuntimeMetric reports whether name comes from the Prometheus client's
// standard Go or process collector.
func isRuntimeMetric(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}
