package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// boshSDFile is where prometheus-boshrelease's bosh_exporter writes its
// service discovery targets.
const boshSDFile = "/var/vcap/store/bosh_exporter/bosh_target_groups.json"

// scrapeConfigTemplate is the scrape configuration the README documents
// for prometheus-boshrelease: bosh_exporter's targets (IPs without port)
// kept by monit process name, the deployment copied to bosh_deployment, a
// fixed environment label, and the metrics port added; the agents over
// mutual TLS, with a client certificate from cf's metric_scraper_ca.
var scrapeConfigTemplate = template.Must(template.New("scrape").Parse(`{{range .Jobs}}- job_name: {{.Process}}
{{- with .TLS}}
  scheme: https
  tls_config:
{{- if .Inline}}
    ca: {{.CA}}
    cert: {{.Cert}}
    key: {{.Key}}
{{- else}}
    ca_file: {{.CA}}
    cert_file: {{.Cert}}
    key_file: {{.Key}}
{{- end}}
    server_name: {{.ServerName}}
{{- end}}
  file_sd_configs:
  - files:
    - {{$.SDFile}}
  relabel_configs:
  - source_labels: [__meta_bosh_job_process_name]
    regex: {{.Process}}
    action: keep
  - source_labels: [__meta_bosh_deployment]
    target_label: bosh_deployment
  - target_label: environment
    replacement: {{$.Environment}}
  - source_labels: [__address__]
    target_label: __address__
    replacement: "${1}:{{.Port}}"
{{end}}`))

// scrapeTLS is how Prometheus scrapes a job over mutual TLS.
type scrapeTLS struct {
	// Inline puts CA, Cert and Key into the configuration itself (ca, cert,
	// key: Prometheus 3, not Debian's 2.42); otherwise they are file names
	// (ca_file, cert_file, key_file: every Prometheus).
	Inline        bool
	CA, Cert, Key string
	ServerName    string
}

// readmeAgentScrapeTLS is the README's tls_config: inline, from the
// certificate variable it declares for the Prometheus deployment, because
// no job of prometheus-boshrelease writes TLS files for a scrape config;
// and the agents' metrics.server_name.
var readmeAgentScrapeTLS = scrapeTLS{
	Inline:     true,
	CA:         "((pcap_metrics_scrape_tls.ca))",
	Cert:       "((pcap_metrics_scrape_tls.certificate))",
	Key:        "((pcap_metrics_scrape_tls.private_key))",
	ServerName: "pcap_server_metrics",
}

// boshScrapeConfigs renders the scrape_configs entries for the API and
// agent jobs.
func boshScrapeConfigs(sdFile, environment string, apiPort, agentPort int, agentTLS scrapeTLS) string {
	type job struct {
		Process string
		Port    int
		TLS     *scrapeTLS
	}
	var b bytes.Buffer
	err := scrapeConfigTemplate.Execute(&b, struct {
		SDFile, Environment string
		Jobs                []job
	}{sdFile, environment, []job{{"pcap-server-api", apiPort, nil}, {"pcap-server", agentPort, &agentTLS}}})
	if err != nil {
		panic(err) // the template is fixed: a failure is a bug in it
	}
	return b.String()
}

// boshTargetGroup is one entry of bosh_exporter's service discovery file.
type boshTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// prometheusServer is a Prometheus process run by a test.
type prometheusServer struct {
	url    string
	log    string // file with everything it printed
	client *http.Client
	exited <-chan struct{}
}

// requireProm finds a Prometheus tool or fails: the dashboard test is
// part of the contract, so a machine without it must not pass silently.
func requireProm(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: make test installs Debian's prometheus package (scripts/install-deps.sh), or apt-get install prometheus", name)
	}
	return path
}

// startPrometheus runs Prometheus with config on a free loopback port,
// its storage in dir, until the test ends, and waits until it is ready.
func startPrometheus(t *testing.T, dir, config string) *prometheusServer {
	t.Helper()
	bin := requireProm(t, "prometheus")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with the test binary too, should it die without cleanups
	// (a panic, a -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		// Pdeathsig fires when the thread that started the child ends, so
		// that thread is held, locked, until Prometheus has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		logFile.Close()
		t.Fatalf("start prometheus: %v", err)
	}
	p := &prometheusServer{
		url:    "http://" + addr,
		log:    logPath,
		client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
		exited: exited,
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
		p.client.CloseIdleConnections()
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	waitFor(t, p, 30*time.Second, "Prometheus ready", func() (bool, string) {
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

func (p *prometheusServer) dumpLog(t *testing.T) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Logf("prometheus log: %v", err)
		return
	}
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	t.Logf("prometheus log (end):\n%s", data)
}

// waitFor polls check every 100 ms until it reports done, Prometheus
// exits, or timeout passes.
func waitFor(t *testing.T, p *prometheusServer, timeout time.Duration, what string, check func() (done bool, status string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var status string
	for {
		var done bool
		if done, status = check(); done {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("waiting for %s: prometheus exited", what)
		case <-deadline.C:
			t.Fatalf("waiting for %s: not within %v; last: %s", what, timeout, status)
		case <-tick.C:
		}
	}
}

// promError is an error answer of Prometheus' HTTP API.
type promError struct {
	Type, Message string
}

func (e *promError) Error() string { return e.Type + ": " + e.Message }

// api calls a Prometheus HTTP API endpoint and decodes its data.
func (p *prometheusServer) api(path string, params url.Values, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("prometheus %s: %d %.200s: %w", path, resp.StatusCode, body, err)
	}
	if env.Status != "success" {
		return &promError{Type: env.ErrorType, Message: env.Error}
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		return fmt.Errorf("prometheus %s: data %.200s: %w", path, env.Data, err)
	}
	return nil
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  float64 // NaN and ±Inf included: they are data
}

// query evaluates expr at the current time. A scalar result is returned
// as one sample without labels.
func (p *prometheusServer) query(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	parse := func(v [2]any) (float64, error) {
		s, ok := v[1].(string)
		if !ok {
			return 0, fmt.Errorf("value %v is not a string", v[1])
		}
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "vector":
		var raw []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		out := make([]promSample, 0, len(raw))
		for _, r := range raw {
			v, err := parse(r.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, promSample{Metric: r.Metric, Value: v})
		}
		return out, nil
	case "scalar":
		var raw [2]any
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, err
		}
		v, err := parse(raw)
		if err != nil {
			return nil, err
		}
		return []promSample{{Value: v}}, nil
	}
	return nil, fmt.Errorf("result type %s: a dashboard expression must give a vector", data.ResultType)
}

// series lists the label sets of the series matching selector.
func (p *prometheusServer) series(selector string) ([]map[string]string, error) {
	var out []map[string]string
	start := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	err := p.api("/api/v1/series", url.Values{"match[]": {selector}, "start": {start}}, &out)
	return out, err
}

// metricNames lists every metric name Prometheus holds.
func (p *prometheusServer) metricNames() (map[string]bool, error) {
	var names []string
	if err := p.api("/api/v1/label/__name__/values", url.Values{}, &names); err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// promTarget is an active scrape target.
type promTarget struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// targets lists the active scrape targets and counts the dropped ones.
func (p *prometheusServer) targets() (active []promTarget, dropped int, err error) {
	var data struct {
		Active  []promTarget     `json:"activeTargets"`
		Dropped []map[string]any `json:"droppedTargets"`
	}
	if err := p.api("/api/v1/targets", url.Values{}, &data); err != nil {
		return nil, 0, err
	}
	return data.Active, len(data.Dropped), nil
}
