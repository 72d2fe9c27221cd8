package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The dashboards' datasource input, as prometheus-boshrelease's Grafana job
// substitutes it (sed over ${DS_PROMETHEUS}) and Grafana's import asks for it.
const dsInput = "${DS_PROMETHEUS}"

// grafanaDashboard is the part of a Grafana dashboard JSON model the tests
// read; raw keeps the whole document for checks on keys the struct omits.
type grafanaDashboard struct {
	file string
	raw  map[string]any

	Inputs []struct {
		Name       string `json:"name"`
		Label      string `json:"label"`
		Type       string `json:"type"`
		PluginID   string `json:"pluginId"`
		PluginName string `json:"pluginName"`
	} `json:"__inputs"`
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  any    `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []grafanaTarget `json:"targets"`
	Panels  []grafanaPanel  `json:"panels"` // a collapsed row's panels
}

type grafanaTarget struct {
	RefID      string `json:"refId"`
	Datasource any    `json:"datasource"`
	Expr       string `json:"expr"`
}

type grafanaVariable struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Datasource any     `json:"datasource"`
	Query      any     `json:"query"` // a string, or {"query": ...} in newer Grafana
	IncludeAll bool    `json:"includeAll"`
	Multi      bool    `json:"multi"`
	AllValue   *string `json:"allValue"`
}

// query is the variable's query text.
func (v grafanaVariable) query() string {
	switch q := v.Query.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

func loadDashboard(t *testing.T, file string) *grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := &grafanaDashboard{file: file}
	if err := json.Unmarshal(data, d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := json.Unmarshal(data, &d.raw); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return d
}

// dataPanels are the panels that query, rows' nested panels included.
func (d *grafanaDashboard) dataPanels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// panelExpr is one PromQL expression of a panel.
type panelExpr struct {
	panel, refID, expr string
}

func (d *grafanaDashboard) exprs() []panelExpr {
	var out []panelExpr
	for _, p := range d.dataPanels() {
		for _, tg := range p.Targets {
			out = append(out, panelExpr{panel: p.Title, refID: tg.RefID, expr: tg.Expr})
		}
	}
	return out
}

// builtinVars are Grafana's own variables, with values that fit a test
// whose Prometheus scrapes every second and has run for well under a
// minute before the capture.
var builtinVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "5m",
}

var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)`)

// substitute replaces Grafana variable references ($name, ${name},
// ${name:fmt}, [[name]]) with vars or Grafana's built-ins; a reference to
// anything else is an error, as Grafana would leave it in the query.
func substitute(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if v, ok := vars[name]; ok {
			return v
		}
		if v, ok := builtinVars[name]; ok {
			return v
		}
		unknown = append(unknown, ref)
		return ref
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v in %q", unknown, expr)
	}
	return out, nil
}

// regexValue is a single variable value as Grafana puts it into a regex
// matcher: regex-escaped, then escaped for a PromQL string literal.
func regexValue(v string) string {
	return strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`)
}

var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// parseLabelValues splits Grafana's label_values(selector, label).
func parseLabelValues(q string) (selector, label string, err error) {
	m := labelValuesQuery.FindStringSubmatch(q)
	if m == nil {
		return "", "", fmt.Errorf("variable query %q is not label_values(selector, label): teach the test its form", q)
	}
	return strings.TrimSpace(m[1]), m[2], nil
}

// promqlNotMetric are PromQL words that are not metric names though no
// "(" follows them (a word before "(" is a function and skipped for it):
// keywords, and aggregations, which may put "by (...)" before theirs.
var promqlNotMetric = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

// promqlLabelLists are the keywords whose parenthesised list holds label
// names, not expressions.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames finds the metric names an expression selects by bare name.
// It is a tokenizer, not a parser: enough for dashboards, where every
// selector starts with its metric name; a {__name__=...} selector is
// reported as an error so that no metric escapes the existence check.
func metricNames(expr string) ([]string, error) {
	var names []string
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipString := func(i int) (int, error) {
		quote := expr[i]
		for j := i + 1; j < len(expr); j++ {
			switch {
			case expr[j] == '\\' && quote != '`':
				j++
			case expr[j] == quote:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string in %q", expr)
	}
	// skipTo skips to the closing byte, over strings.
	skipTo := func(i int, closing byte) (int, error) {
		for j := i + 1; j < len(expr); {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				k, err := skipString(j)
				if err != nil {
					return 0, err
				}
				j = k
			case c == closing:
				return j + 1, nil
			default:
				j++
			}
		}
		return 0, fmt.Errorf("no %q closes %q", closing, expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := skipTo(i, '}')
			if err != nil {
				return nil, err
			}
			if strings.Contains(expr[i:j], "__name__") {
				return nil, fmt.Errorf("selector %s names its metric by __name__: write the name before the braces", expr[i:j])
			}
			i = j
		case c == '[':
			j, err := skipTo(i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			// A number, with exponent or hex digits.
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			followedByParen := k < len(expr) && expr[k] == '('
			switch {
			case promqlLabelLists[word] && followedByParen:
				end, err := skipTo(k, ')')
				if err != nil {
					return nil, err
				}
				j = end
			case followedByParen || promqlNotMetric[word]:
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// metricFamily is the family a histogram's series belongs to.
func metricFamily(name string) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}
