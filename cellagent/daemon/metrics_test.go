package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// TestMetricsServeMutualTLS runs the agent from a configuration file with
// metrics.ca_cert, metrics.cert and metrics.key, as the BOSH job renders
// them from cf-deployment's metric_scraper_ca certificates, and scrapes it
// as prom_scraper does: only a client certificate signed by that CA gets
// the metrics.
func TestMetricsServeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	tunnelCA := mustCA(t, "tunnel CA")
	agentCert, agentKey := mustWrite(t, dir, "agent", must(tunnelCA.Client("agent")))
	tunnelCAFile := must(tunnelCA.WriteFile(dir, "tunnel-ca"))
	scraperCA := mustCA(t, "metricScraperCA")
	metricsCert, metricsKey := mustWrite(t, dir, "metrics", must(scraperCA.Server("pcap_server_metrics")))
	scraperCAFile := must(scraperCA.WriteFile(dir, "scraper-ca"))

	config := filepath.Join(dir, "pcap-server.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `
id: cell-0
cell_ips: [127.0.0.1]
api:
  addresses: ["127.0.0.1:1"]
  tls: {certificate: %s, private_key: %s, ca: %s}
metrics:
  address: 127.0.0.1:0
  ca_cert: %s
  cert: %s
  key: %s
dev: {netns: {}}
`, agentCert, agentKey, tunnelCAFile, scraperCAFile, metricsCert, metricsKey), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := agentconfig.Load(config)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	url := "https://" + d.MetricsAddr().String() + "/metrics"

	scrape := func(clientCert *testpki.Leaf) (string, error) {
		cfg := &tls.Config{RootCAs: scraperCA.Pool(), ServerName: "pcap_server_metrics", MinVersion: tls.VersionTLS12}
		if clientCert != nil {
			// Offered whatever CAs the server names, so that a foreign
			// certificate reaches the server's verification.
			cert := must(clientCert.TLS())
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, body)
		}
		return string(body), err
	}

	if _, err := scrape(nil); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("a client without a certificate: %v; want the handshake refused (certificate required)", err)
	}
	otherCA := mustCA(t, "another CA")
	if _, err := scrape(must(otherCA.Client("prom_scraper"))); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Errorf("a client certificate of another CA: %v; want it refused (unknown certificate authority)", err)
	}
	body, err := scrape(must(scraperCA.Client("prom_scraper")))
	if err != nil {
		t.Fatalf("a client certificate signed by metric_scraper_ca: %v", err)
	}
	if !strings.Contains(body, "pcap_agent_build_info{") {
		t.Errorf("the metrics lack pcap_agent_build_info:\n%.500s", body)
	}

	// Plain HTTP gets nothing either.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + d.MetricsAddr().String() + "/metrics")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served the metrics")
		}
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("plain HTTP hung: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mustCA(t *testing.T, name string) *testpki.CA {
	t.Helper()
	ca, err := testpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustWrite(t *testing.T, dir, name string, l *testpki.Leaf) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := l.WriteFiles(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
