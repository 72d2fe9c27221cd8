package e2e

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// scrape fetches /metrics in the text format.
func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %d %v", addr, resp.StatusCode, err)
	}
	return body
}

// metricValue finds name{labels} in a text scrape.
func metricValue(t *testing.T, scraped []byte, name string, labels map[string]string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(scraped))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestMetricsFollowACapture(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	agent := startAgentWith(t, api, agentConfig(p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()}))
	apiAddr, agentAddr := api.d.MetricsAddr().String(), agent.d.MetricsAddr().String()

	const n = 40
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "packets": {strconv.Itoa(n)}})
	a.send(t, "metrics", n)
	r := finish(t, resp)
	// A refused request too: counted by status.
	finish(t, startCapture(t, api, url.Values{"filter": {"bogus filter"}}))

	apiM, agentM := scrape(t, apiAddr), scrape(t, agentAddr)
	for name, scraped := range map[string][]byte{"api": apiM, "agent": agentM} {
		if _, err := exec.LookPath("promtool"); err != nil {
			t.Fatal("promtool is not installed (make test installs prometheus)")
		}
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = bytes.NewReader(scraped)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics on the %s's metrics: %v\n%s", name, err, out)
		}
	}
	checks := []struct {
		scraped []byte
		name    string
		labels  map[string]string
		want    float64
	}{
		{apiM, "pcap_api_agent_sessions", nil, 1},
		{apiM, "pcap_api_agent_handshakes_total", map[string]string{"result": "accepted"}, 1},
		{apiM, "pcap_api_capture_requests_total", map[string]string{"code": "200", "target": "app"}, 1},
		{apiM, "pcap_api_capture_requests_total", map[string]string{"code": "400", "target": "app"}, 1},
		{apiM, "pcap_api_captures_total", map[string]string{"reason": "packets", "target": "app"}, 1},
		{apiM, "pcap_api_captures_active", nil, 0},
		{apiM, "pcap_api_streamed_packets_total", nil, n},
		{apiM, "pcap_api_streamed_bytes_total", nil, float64(len(r.body))},
		{apiM, "pcap_api_dropped_packets_total", map[string]string{"reason": "agent"}, 0},
		{apiM, "pcap_api_capture_duration_seconds", nil, 1},
		{apiM, "pcap_api_draining", nil, 0},
		{apiM, "pcap_api_build_info", nil, 1},
		{agentM, "pcap_agent_api_sessions", nil, 1},
		{agentM, "pcap_agent_api_replicas_known", nil, 1},
		{agentM, "pcap_agent_capture_requests_total", map[string]string{"result": "started"}, 1},
		{agentM, "pcap_agent_capture_requests_total", map[string]string{"result": "bad_filter"}, 1},
		{agentM, "pcap_agent_captured_packets_total", nil, n},
		{agentM, "pcap_agent_captures_active", nil, 0},
		{agentM, "pcap_agent_container_lookup_duration_seconds", nil, 2},
		{agentM, "pcap_agent_dropped_packets_total", map[string]string{"reason": "kernel"}, 0},
		{agentM, "pcap_agent_build_info", nil, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, c.scraped, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Labels are bounded: only these names, and no app GUID, cell address
	// or token anywhere.
	allowed := map[string]bool{"result": true, "code": true, "reason": true, "target": true, "upstream": true, "endpoint": true, "version": true, "goversion": true, "le": true, "quantile": true, "cause": true}
	for _, scraped := range [][]byte{apiM, agentM} {
		for _, bad := range []string{appGUID, "127.0.0.1", devToken} {
			if strings.Contains(string(scraped), bad) {
				t.Errorf("metrics mention %q", bad)
			}
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(scraped))
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if !allowed[l.GetName()] {
						t.Errorf("%s has label %q", name, l.GetName())
					}
				}
			}
		}
	}
}

// The agent binary runs its Go code on limits.gomaxprocs cores, whatever
// the VM has: Go's runtime says so in its own metric.
func TestAgentAppliesGOMAXPROCS(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	cfg := agentConfig(p, api, "127.0.0.1", nil)
	// 1 differs from Go's default on any machine of two cores or more.
	if runtime.NumCPU() < 2 {
		t.Fatalf("%d CPU: the test needs two to tell the setting from Go's default", runtime.NumCPU())
	}
	cfg.Limits.GOMAXPROCS = 1
	// The binary's metrics listener, on a port chosen here to find it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics.Address = l.Addr().String()
	l.Close()
	startAgentProcessWith(t, api, cfg)
	if got := metricValue(t, scrape(t, cfg.Metrics.Address), "go_sched_gomaxprocs_threads", nil); got != 1 {
		t.Fatalf("the agent runs with GOMAXPROCS %v, want limits.gomaxprocs 1", got)
	}
}
