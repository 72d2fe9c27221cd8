package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// dashboardSpec is what the tests know of a dashboard file.
type dashboardSpec struct {
	file, uid, title string
	prefix           string // the metrics of the daemon it shows
	process          string // that daemon's monit process name
}

var dashboardSpecs = []dashboardSpec{
	{"../../dashboards/pcap-server-api.json", "pcap-server-api", "CF: pcap-server API", "pcap_api_", "pcap-server-api"},
	{"../../dashboards/pcap-server-agents.json", "pcap-server-agents", "CF: pcap-server agents", "pcap_agent_", "pcap-server"},
}

// dashboardVars are the template variables every dashboard filters on, in
// the order each one's query depends on the ones before. The labels are
// those the README's scrape configuration attaches.
var dashboardVars = []string{"environment", "bosh_deployment", "instance"}

// The format prometheus-boshrelease's Grafana job loads, and Grafana's
// import asks for: one datasource input, used by every panel, target and
// variable.
func TestDashboardsAreWellFormed(t *testing.T) {
	for _, spec := range dashboardSpecs {
		t.Run(filepath.Base(spec.file), func(t *testing.T) {
			data, err := os.ReadFile(spec.file)
			if err != nil {
				t.Fatal(err)
			}
			// The BOSH job may render the file as an ERB template.
			if bytes.Contains(data, []byte("<%")) {
				t.Error("the dashboard contains <%, which ERB would try to evaluate")
			}
			d := loadDashboard(t, spec.file)
			if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Label != "Prometheus" ||
				d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" || d.Inputs[0].PluginName != "Prometheus" {
				t.Errorf("__inputs = %+v, want the one DS_PROMETHEUS datasource input", d.Inputs)
			}
			if id, ok := d.raw["id"]; !ok || id != nil {
				t.Errorf("id = %v (present %v), want null: Grafana assigns it", id, ok)
			}
			if d.UID != spec.uid || d.Title != spec.title {
				t.Errorf("uid %q title %q, want %q %q", d.UID, d.Title, spec.uid, spec.title)
			}
			walkDatasources(d.raw, "", func(path string, ds any) {
				grafanaOwn := strings.HasPrefix(path, "annotations.") && ds == "-- Grafana --"
				if ds != dsInput && !grafanaOwn {
					t.Errorf("%s: datasource %v, want %q", path, ds, dsInput)
				}
			})

			panels := d.dataPanels()
			if len(panels) == 0 {
				t.Fatal("no panels")
			}
			ids, titles := map[int]bool{}, map[string]bool{}
			for _, p := range d.Panels {
				if ids[p.ID] {
					t.Errorf("panel id %d twice", p.ID)
				}
				ids[p.ID] = true
			}
			for _, p := range panels {
				if titles[p.Title] || p.Title == "" {
					t.Errorf("panel title %q empty or twice", p.Title)
				}
				titles[p.Title] = true
				if strings.TrimSpace(p.Description) == "" {
					t.Errorf("%q has no description", p.Title)
				}
				if p.FieldConfig.Defaults.Unit == "" {
					t.Errorf("%q has no unit", p.Title)
				}
				if p.Datasource != dsInput {
					t.Errorf("%q: datasource %v", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%q has no query", p.Title)
				}
				refs := map[string]bool{}
				for _, tg := range p.Targets {
					if tg.RefID == "" || refs[tg.RefID] {
						t.Errorf("%q: refId %q empty or twice", p.Title, tg.RefID)
					}
					refs[tg.RefID] = true
					if tg.Datasource != dsInput {
						t.Errorf("%q %s: datasource %v", p.Title, tg.RefID, tg.Datasource)
					}
				}
			}

			var names []string
			for _, v := range d.Templating.List {
				names = append(names, v.Name)
				if v.Type != "query" || v.Datasource != dsInput {
					t.Errorf("variable %s: type %q datasource %v, want a query on %q", v.Name, v.Type, v.Datasource, dsInput)
				}
				if v.IncludeAll && (v.AllValue == nil || *v.AllValue != ".*") {
					// Without it Grafana's "All" lists every value in one
					// regex: thousands of cells make queries too long.
					t.Errorf("variable %s: includeAll without allValue .*", v.Name)
				}
				if _, _, err := parseLabelValues(v.query()); err != nil {
					t.Error(err)
				}
			}
			if !slices.Equal(names, dashboardVars) {
				t.Errorf("variables %v, want %v", names, dashboardVars)
			}

			dummy := map[string]string{}
			for _, v := range dashboardVars {
				dummy[v] = "x"
			}
			for _, e := range d.exprs() {
				if _, err := substitute(e.expr, dummy); err != nil {
					t.Errorf("%q %s: %v", e.panel, e.refID, err)
				}
				metrics, err := metricNames(e.expr)
				if err != nil {
					t.Errorf("%q %s: %v", e.panel, e.refID, err)
					continue
				}
				// Every query is tied to this daemon's metrics, so that
				// the Go and process metrics every exporter has are not
				// shown for other targets.
				if !slices.ContainsFunc(metrics, func(m string) bool { return strings.HasPrefix(m, spec.prefix) }) {
					t.Errorf("%q %s: %q selects no %s* metric", e.panel, e.refID, e.expr, spec.prefix)
				}
				for _, m := range metrics {
					if !strings.HasPrefix(m, spec.prefix) && !strings.HasPrefix(m, "process_") && !strings.HasPrefix(m, "go_") {
						t.Errorf("%q %s: metric %s is neither %s*, process_* nor go_*", e.panel, e.refID, m, spec.prefix)
					}
				}
			}
		})
	}
}

// metricsPKI gives the agent's metrics listener a server certificate for
// readmeAgentScrapeTLS.ServerName and returns the files Prometheus
// scrapes it with: the CA and a client certificate it signed.
func metricsPKI(t *testing.T, cfg *agentconfig.Config) scrapeTLS {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA("metricScraperCA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server(readmeAgentScrapeTLS.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	st := scrapeTLS{ServerName: readmeAgentScrapeTLS.ServerName}
	if st.CA, err = ca.WriteFile(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Cert, cfg.Metrics.Key, err = server.WriteFiles(dir, "metrics"); err != nil {
		t.Fatal(err)
	}
	cfg.Metrics.CACert = st.CA
	if st.Cert, st.Key, err = client.WriteFiles(dir, "scrape"); err != nil {
		t.Fatal(err)
	}
	return st
}

// walkDatasources calls fn with every "datasource" value in the document.
func walkDatasources(v any, path string, fn func(path string, ds any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := strings.TrimPrefix(path+"."+k, ".")
			if k == "datasource" {
				fn(p, child)
				continue
			}
			walkDatasources(child, p, fn)
		}
	case []any:
		for i, child := range v {
			walkDatasources(child, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// The README's scrape configuration is the one TestDashboardsAgainstPrometheus
// runs, with the default metrics ports and the agents' client certificate
// inline from a BOSH variable, where the test runs Debian's Prometheus 2.42
// with files (the same certificates; 2.42 knows no inline ca, cert, key).
func TestReadmeShowsTheTestedScrapeConfig(t *testing.T) {
	port := func(address string) int {
		_, p, err := net.SplitHostPort(address)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := boshScrapeConfigs(boshSDFile, "((metrics_environment))",
		port(apiconfig.Default().Metrics.Address), port(agentconfig.Default().Metrics.Address), readmeAgentScrapeTLS)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+want+"```\n") {
		t.Fatalf("README.md lacks the scrape configuration the dashboard test proves; it should show:\n%s", want)
	}
}

// A real Prometheus scrapes a running API and agent through the README's
// scrape configuration while a capture runs; every PromQL expression of
// the dashboards, variables substituted as Grafana would, must parse and
// return data, and name only metrics the daemons export.
func TestDashboardsAgainstPrometheus(t *testing.T) {
	netnstest.RequireRoot(t)
	requireProm(t, "prometheus")
	promtool := requireProm(t, "promtool")

	f := newFoundation(t)
	p := newPKI(t)
	a := newApp(t)
	// Against the fake Cloud Controller and UAA, so that the upstream
	// latency metrics exist.
	api := startAPI(t, p, nil, f.cfMode)
	f.running(fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "handle-0"})
	// The agent serves its metrics over mutual TLS, as the cf deployment
	// configures it, and Prometheus scrapes with a client certificate of
	// the same CA (cf's metric_scraper_ca), from files: Debian's
	// Prometheus 2.42 takes no inline certificates.
	agentCfg := agentConfig(p, api, "127.0.0.1", map[string]string{f.app.GUID + "/0": a.pair.App.Path()})
	scrapeTLS := metricsPKI(t, &agentCfg)
	agent := startAgentWith(t, api, agentCfg)
	apiAddr, ok := api.d.MetricsAddr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("API metrics address %v", api.d.MetricsAddr())
	}
	agentAddr, ok := agent.d.MetricsAddr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("agent metrics address %v", agent.d.MetricsAddr())
	}

	// What bosh_exporter would write for an API deployment, the cells of
	// the cf deployment, and another exporter the keep rules must drop.
	const env = "e2e-env"
	deployment := map[string]string{"pcap-server-api": "pcap-server", "pcap-server": "cf"}
	group := func(deployment, process, release string) boshTargetGroup {
		return boshTargetGroup{Targets: []string{"127.0.0.1"}, Labels: map[string]string{
			"__meta_bosh_deployment":          deployment,
			"__meta_bosh_deployment_releases": release,
			"__meta_bosh_job_process_name":    process,
			"__meta_bosh_job_process_release": release,
		}}
	}
	dir := t.TempDir()
	sdFile := filepath.Join(dir, "bosh_target_groups.json")
	sd, err := json.Marshal([]boshTargetGroup{
		group(deployment["pcap-server-api"], "pcap-server-api", "pcap-server/0+dev.1"),
		group(deployment["pcap-server"], "pcap-server", "pcap-server/0+dev.1"),
		group("cf", "node_exporter", "node-exporter/4.2.0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sdFile, sd, 0o644); err != nil {
		t.Fatal(err)
	}
	config := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" +
		boshScrapeConfigs(sdFile, env, apiAddr.Port, agentAddr.Port, scrapeTLS)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", configFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, config)
	}
	prom := startPrometheus(t, dir, configFile)

	wantTargets := map[string]map[string]string{
		"pcap-server-api": {"instance": apiAddr.String(), "environment": env, "bosh_deployment": deployment["pcap-server-api"]},
		"pcap-server":     {"instance": agentAddr.String(), "environment": env, "bosh_deployment": deployment["pcap-server"]},
	}
	waitFor(t, prom, 30*time.Second, "both targets up with the relabelled labels", func() (bool, string) {
		active, dropped, err := prom.targets()
		if err != nil {
			return false, err.Error()
		}
		// Each job keeps its own group and drops the two others.
		if len(active) != 2 || dropped != 4 {
			return false, fmt.Sprintf("%d active targets %v, %d dropped; want 2 and 4", len(active), active, dropped)
		}
		for _, tg := range active {
			want, ok := wantTargets[tg.Labels["job"]]
			if !ok {
				return false, fmt.Sprintf("target of job %q", tg.Labels["job"])
			}
			for k, v := range want {
				if tg.Labels[k] != v {
					return false, fmt.Sprintf("target %s: %s=%q, want %q", tg.ScrapeURL, k, tg.Labels[k], v)
				}
			}
			if tg.Health != "up" {
				return false, fmt.Sprintf("target %s: %s %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
		}
		return true, ""
	})

	// A capture with packets, so that counters move, scraped while it
	// runs; then two refused requests: a bad filter (400, refused by the
	// agent) and an app the user cannot see (404 from the Cloud Controller).
	const n = 50
	envSel := fmt.Sprintf("environment=%q", env)
	token := f.uaa.UserToken(f.developer)
	resp := startCaptureAs(t, api, f.app.GUID, token, url.Values{"filter": {"udp"}, "packets": {strconv.Itoa(n)}})
	if resp.StatusCode != 200 {
		r := finish(t, resp)
		t.Fatalf("capture: %d %s", r.status, r.body)
	}
	a.send(t, "dashboards", n/2)
	waitForResults(t, prom, "the running capture in Prometheus",
		fmt.Sprintf("pcap_api_captures_active{%s} == 1", envSel),
		fmt.Sprintf("pcap_agent_captures_active{%s} == 1", envSel),
		fmt.Sprintf("pcap_api_streamed_packets_total{%s} > 0", envSel))
	a.send(t, "dashboards-rest", n-n/2)
	if r := finish(t, resp); r.trailer.Get("Pcap-Packets") != strconv.Itoa(n) {
		t.Fatalf("capture ended with Pcap-Packets %q, want %d", r.trailer.Get("Pcap-Packets"), n)
	}
	refuse := func() {
		t.Helper()
		if r := finish(t, startCaptureAs(t, api, f.app.GUID, token, url.Values{"filter": {"bogus filter"}})); r.status != 400 {
			t.Fatalf("bad filter: %d %s", r.status, r.body)
		}
		if r := finish(t, startCaptureAs(t, api, f.app.GUID, f.uaa.UserToken(f.otherSpace), url.Values{"packets": {"1"}})); r.status != 404 {
			t.Fatalf("developer of another space: %d %s", r.status, r.body)
		}
	}
	refuse()

	// The refusals again once Prometheus holds their series: a series
	// appears with its first event, which rate() cannot see, as in a
	// replica's first minutes.
	waitForResults(t, prom, "the refusals' series in Prometheus",
		fmt.Sprintf(`pcap_api_capture_requests_total{%s,code="404"}`, envSel),
		fmt.Sprintf(`pcap_agent_capture_requests_total{%s,result="bad_filter"}`, envSel))
	refuse()
	waitForResults(t, prom, "the capture's and the refusals' counters in Prometheus",
		fmt.Sprintf("pcap_api_streamed_packets_total{%s} >= %d", envSel, n),
		fmt.Sprintf("pcap_agent_captured_packets_total{%s} >= %d", envSel, n),
		fmt.Sprintf("pcap_api_captures_active{%s} == 0", envSel),
		fmt.Sprintf(`pcap_api_capture_requests_total{%s,code="404"} >= 2`, envSel),
		fmt.Sprintf(`pcap_agent_capture_requests_total{%s,result="bad_filter"} >= 2`, envSel))

	exported, err := prom.metricNames()
	if err != nil {
		t.Fatal(err)
	}
	instance := map[string]string{"pcap-server-api": apiAddr.String(), "pcap-server": agentAddr.String()}
	for _, spec := range dashboardSpecs {
		t.Run(filepath.Base(spec.file), func(t *testing.T) {
			d := loadDashboard(t, spec.file)
			want := map[string]string{"environment": env, "bosh_deployment": deployment[spec.process], "instance": instance[spec.process]}
			used := map[string]bool{}
			selected := resolveVariables(t, prom, d, want, exported, used)
			all := map[string]string{}
			for _, v := range d.Templating.List {
				all[v.Name] = selected[v.Name]
				if v.IncludeAll && v.AllValue != nil {
					all[v.Name] = *v.AllValue
				}
			}
			results := map[string][]promSample{} // by panel/refId, with the variables selected
			for _, e := range d.exprs() {
				metrics, err := metricNames(e.expr)
				if err != nil {
					t.Errorf("%q %s: %v", e.panel, e.refID, err)
				}
				for _, m := range metrics {
					used[m] = true
					if !exported[m] {
						t.Errorf("%q %s: metric %s is not exported by the API or the agent", e.panel, e.refID, m)
					}
				}
				for _, pass := range []struct {
					name string
					vars map[string]string
				}{{"selected values", selected}, {"All", all}} {
					q, err := substitute(e.expr, pass.vars)
					if err != nil {
						t.Errorf("%q %s: %v", e.panel, e.refID, err)
						continue
					}
					res, err := prom.query(q)
					if err != nil {
						t.Errorf("%q %s (%s): %v\n%s", e.panel, e.refID, pass.name, err, q)
						continue
					}
					if len(res) == 0 {
						t.Errorf("%q %s (%s): no data\n%s", e.panel, e.refID, pass.name, q)
						continue
					}
					for _, s := range res {
						if got, ok := s.Metric["instance"]; ok && got != want["instance"] {
							t.Errorf("%q %s (%s): a series of %s, not of this dashboard's %s\n%s", e.panel, e.refID, pass.name, got, want["instance"], q)
						}
					}
					if pass.name == "selected values" {
						results[e.panel+"/"+e.refID] = res
					}
				}
			}

			// Every metric family of the daemon is on its dashboard
			// (OpenMetrics' _created series aside, should Prometheus keep
			// them).
			families := map[string]bool{}
			for m := range used {
				families[metricFamily(m)] = true
			}
			for m := range exported {
				if strings.HasPrefix(m, spec.prefix) && !strings.HasSuffix(m, "_created") && !families[metricFamily(m)] {
					t.Errorf("metric %s is on no panel", m)
				}
			}

			// The values follow what happened: one agent, connected to the
			// one API replica, and the capture's packets.
			for key, ok := range dashboardValueChecks[spec.uid] {
				res, found := results[key]
				if !found {
					t.Errorf("no panel %s", key)
				} else if !ok(res) {
					t.Errorf("%s = %v", key, res)
				}
			}
		})
	}
}

// dashboardValueChecks say what some panels must show after the test's
// requests: one agent connected to the one API replica, the capture's
// packets, nothing failing.
var dashboardValueChecks = map[string]map[string]func([]promSample) bool{
	"pcap-server-api": {
		"Cells connected/A":                only(1),
		"Agent sessions per replica/A":     only(1),
		"Streamed to clients: packets/s/A": positive,
		"Streamed to clients: bytes/s/A":   positive,
		"Replicas draining/A":              only(0),
		"Active captures/A":                only(0),
		"Versions running/A":               only(1),
		"Capture requests failing (5xx)/A": only(0),
		"Capture request failure ratio/C":  positive, // the 400 and 404
		"Refused and failed handshakes/A":  allZero,
		"Cloud Controller and UAA failure ratio/A": func(res []promSample) bool {
			return slices.ContainsFunc(res, func(s promSample) bool { return s.Metric["upstream"] == "cloud_controller" && s.Value == 0 })
		},
	},
	"pcap-server-agents": {
		"Agents reporting/A":                    only(1),
		"Agents missing an API replica/A":       only(0),
		"API sessions: connected vs known/A":    only(1),
		"API sessions: connected vs known/B":    only(1),
		"Active captures/A":                     only(0),
		"Captured packets/s/A":                  positive,
		"Captured bytes/s/A":                    positive,
		"Capture requests by result/A":          positiveOnly("started", "bad_filter"),
		"Container lookup failures by reason/A": allZero,
	},
}

func only(v float64) func([]promSample) bool {
	return func(res []promSample) bool { return len(res) == 1 && res[0].Value == v }
}

// positiveOnly: the series labelled with these results are above zero,
// every other one is zero.
func positiveOnly(results ...string) func([]promSample) bool {
	return func(res []promSample) bool {
		for _, s := range res {
			if slices.Contains(results, s.Metric["result"]) != (s.Value > 0) {
				return false
			}
		}
		return len(res) > len(results)
	}
}

func positive(res []promSample) bool { return len(res) == 1 && res[0].Value > 0 }

func allZero(res []promSample) bool {
	return !slices.ContainsFunc(res, func(s promSample) bool { return s.Value != 0 })
}

// resolveVariables evaluates the dashboard's variable queries in order, as
// Grafana does, each with the values chosen before it, checks that each
// offers the value the test's scrape configuration attached, and returns
// the variables with those values, formatted for a regex matcher.
func resolveVariables(t *testing.T, prom *prometheusServer, d *grafanaDashboard, want map[string]string, exported, used map[string]bool) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		q, err := substitute(v.query(), vars)
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		selector, label, err := parseLabelValues(q)
		if err != nil {
			t.Fatal(err)
		}
		metrics, err := metricNames(selector)
		if err != nil || len(metrics) == 0 {
			t.Fatalf("variable %s: selector %q: %v", v.Name, selector, err)
		}
		for _, m := range metrics {
			used[m] = true
			if !exported[m] {
				t.Errorf("variable %s: metric %s is not exported", v.Name, m)
			}
		}
		series, err := prom.series(selector)
		if err != nil {
			t.Fatalf("variable %s: %s: %v", v.Name, selector, err)
		}
		var offered []string
		for _, s := range series {
			if val := s[label]; val != "" && !slices.Contains(offered, val) {
				offered = append(offered, val)
			}
		}
		if !slices.Contains(offered, want[v.Name]) {
			t.Fatalf("variable %s (%s) offers %v, want %q among them", v.Name, q, offered, want[v.Name])
		}
		vars[v.Name] = regexValue(want[v.Name])
	}
	return vars
}

// The tokenizer behind the metric existence check finds every selected
// metric, and nothing else, in the forms the dashboards use.
func TestPromQLMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`sum by (reason) (rate(a_total{x="y}[by(z)"}[5m])) / scalar(sum(rate(b[1m])) + sum(c))`, []string{"a_total", "b", "c"}},
		{`x{i=~"$instance"} and on (instance) y`, []string{"x", "y"}},
		{`histogram_quantile(0.95, sum by (le, result) (rate(h_bucket[$__rate_interval])))`, []string{"h_bucket"}},
		{`count(a < b or a == 0) or vector(0)`, []string{"a", "b"}},
		{`60 * sum without (job) (rate(m[1m] offset 5m)) > bool 1e3`, []string{"m"}},
		{`topk(10, g) / ignoring(reason) group_left(le) k`, []string{"g", "k"}},
	}
	for _, c := range cases {
		got, err := metricNames(c.expr)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%s) = %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
	if _, err := metricNames(`sum({__name__="x"})`); err == nil {
		t.Error("a selector by __name__ passed")
	}
	if got, err := substitute(`a{i=~"$instance",e="${environment}",d="[[d]]"}[$__rate_interval]`, map[string]string{"instance": "i", "environment": "e", "d": "d"}); err != nil || got != `a{i=~"i",e="e",d="d"}[1m]` {
		t.Errorf("substitute = %q, %v", got, err)
	}
	if _, err := substitute(`a{i=~"$cell"}`, map[string]string{}); err == nil {
		t.Error("an unknown variable passed")
	}
}

// waitForResults waits until every query returns data.
func waitForResults(t *testing.T, prom *prometheusServer, what string, queries ...string) {
	t.Helper()
	waitFor(t, prom, 30*time.Second, what, func() (bool, string) {
		for _, q := range queries {
			res, err := prom.query(q)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", q, err)
			}
			if len(res) == 0 {
				return false, "nothing yet for " + q
			}
		}
		return true, ""
	})
}
