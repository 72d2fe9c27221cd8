// Package metricsserver serves a Prometheus registry on the daemons' own
// metrics listener (not routed through the gorouter), with the Go and
// process collectors and a build_info metric; over mutual TLS when given
// certificates, as Cloud Foundry's components serve prom_scraper.
package metricsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
)

// NewRegistry returns a registry with the Go and process collectors and
// <namespace>_build_info.
func NewRegistry(namespace string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Always 1; the labels say which build runs.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(buildinfo.Version(), runtime.Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

// Server serves /metrics.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Config is a metrics listener's part of both binaries' configuration.
// With ca_cert, cert and key (PEM files) it serves mutual TLS and refuses
// clients without a certificate signed by ca_cert, as Cloud Foundry's
// components serve prom_scraper.
type Config struct {
	Address string `yaml:"address"`
	CACert  string `yaml:"ca_cert"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
}

// MutualTLS is what Listen needs of it.
func (c Config) MutualTLS() MutualTLS {
	return MutualTLS{CACert: c.CACert, Cert: c.Cert, Key: c.Key}
}

// Validate adds what is wrong with the certificate files to p; the
// address is each binary's to check.
func (c Config) Validate(p *configfile.Problems) {
	p.RequireFilesTogether([]string{"metrics.ca_cert", "metrics.cert", "metrics.key"}, []string{c.CACert, c.Cert, c.Key})
}

// MutualTLS names the PEM files of the listener's mutual TLS, as the
// configuration keys metrics.ca_cert, metrics.cert and metrics.key name
// them (loggregator-agent-release's names). All empty: plain HTTP.
type MutualTLS struct {
	// CACert signed the scrapers' client certificates (cf-deployment's
	// metric_scraper_ca); a client without one is refused in the handshake.
	CACert string
	Cert   string
	Key    string
}

// Enabled tells whether any file is given (Listen then needs all three).
func (m MutualTLS) Enabled() bool { return m.CACert != "" || m.Cert != "" || m.Key != "" }

// Listen opens the listener; an empty address disables metrics (nil).
func Listen(address string, mtls MutualTLS, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if address == "" {
		return nil, nil
	}
	var tlsCfg *tls.Config
	if mtls.Enabled() {
		var err error
		if tlsCfg, err = tlsconfig.MutualServer(mtls.Cert, mtls.Key, mtls.CACert); err != nil {
			return nil, fmt.Errorf("metrics TLS: %w", err)
		}
	}
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
		Registry:          reg,
	}))
	return &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes (a client without a certificate) are the
		// client's problem, not the daemon's: debug, not stderr.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	if s == nil {
		<-ctx.Done()
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	})
	defer stop()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Close closes the listener of a server that never served.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	return s.ln.Close()
}
