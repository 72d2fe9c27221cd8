// Package daemon is the pcap-server-api process: it opens the listeners
// the configuration names, wires authentication, the tunnel and the HTTP
// API together, and on shutdown drains the running captures before it
// closes anything.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/internal/logging"
	"github.com/cloudfoundry/pcap-server-release/internal/metricsserver"
	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/api"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/audit"
	"github.com/cloudfoundry/pcap-server-release/proxy/boshmode"
	"github.com/cloudfoundry/pcap-server-release/proxy/cfmode"
	"github.com/cloudfoundry/pcap-server-release/proxy/devmode"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
)

// Daemon is a configured API, listening but not yet serving.
type Daemon struct {
	cfg *apiconfig.Config
	// bg lives as long as the daemon: UAA's keys are fetched with it.
	bg       context.Context
	stopBg   context.CancelFunc
	log      *slog.Logger
	srv      *api.Server
	tun      *tunnel.Server
	httpSrv  *http.Server
	metrics  *metricsserver.Server
	tunnelLn net.Listener
	httpLn   net.Listener
	closers  []io.Closer
}

// New opens the listeners and the audit log. Logs go to logOut.
func New(ctx context.Context, cfg *apiconfig.Config, logOut io.Writer) (_ *Daemon, err error) {
	d := &Daemon{cfg: cfg}
	d.bg, d.stopBg = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.log, err = logging.New(logOut, cfg.LogLevel, "pcap-server-api"); err != nil {
		return nil, err
	}
	auditOut := logOut
	if cfg.AuditLog != "" {
		f, err := os.OpenFile(cfg.AuditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		d.closers = append(d.closers, f)
		auditOut = f
	}
	reg := metricsserver.NewRegistry("pcap_api")
	m := apimetrics.New(reg)
	auth, resolver, err := d.access(ctx, m)
	if err != nil {
		return nil, err
	}
	var boshAccess api.BoshAccess
	if cfg.Bosh != nil {
		// Contacts nothing yet: the director is found at the first
		// request for one of its VMs.
		if boshAccess, err = boshmode.New(d.bg, cfg.Bosh, d.log, m.Transport); err != nil {
			return nil, err
		}
	}
	tunnelTLS, err := tlsconfig.MutualServer(cfg.Tunnel.TLS.Certificate, cfg.Tunnel.TLS.PrivateKey, cfg.Tunnel.TLS.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("tunnel TLS: %w", err)
	}
	d.tun = tunnel.NewServer(tunnel.Config{
		TLS:               tunnelTLS,
		APIID:             cfg.ID,
		APIVersion:        buildinfo.Version(),
		KeepaliveInterval: cfg.Tunnel.KeepaliveInterval.D(),
		TrustClaimedIPs:   cfg.Tunnel.TrustClaimedIPs,
		Logger:            d.log,
		Metrics:           m,
	})
	if d.tunnelLn, err = net.Listen("tcp", cfg.Tunnel.Address); err != nil {
		return nil, fmt.Errorf("tunnel listener: %w", err)
	}
	d.closers = append(d.closers, d.tunnelLn)
	if d.httpLn, err = net.Listen("tcp", cfg.Listen.Address); err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	d.closers = append(d.closers, d.httpLn)
	if d.metrics, err = metricsserver.Listen(cfg.Metrics.Address, cfg.Metrics.MutualTLS(), reg, d.log); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, d.metrics)
	if t := cfg.Listen.TLS; t != nil {
		tlsCfg, err := tlsconfig.Server(t.Certificate, t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("HTTP TLS: %w", err)
		}
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		d.httpLn = tls.NewListener(d.httpLn, tlsCfg)
	}
	d.srv = api.New(api.Options{
		Limits:       cfg.Limits,
		Stream:       cfg.Stream,
		DrainTimeout: cfg.DrainTimeout.D(),
		CLIDir:       cfg.CLIDir,
		Logger:       d.log,
		Audit:        audit.New(auditOut),
		Metrics:      m,
		Bosh:         boshAccess,
	}, auth, resolver, d.tun.Registry)
	d.httpSrv = &http.Server{
		Handler:           d.srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	return d, nil
}

// access picks who authenticates and authorizes captures of apps; none
// for an API that captures only BOSH VMs.
func (d *Daemon) access(ctx context.Context, m *apimetrics.Metrics) (api.Authenticator, api.Resolver, error) {
	if d.cfg.Dev != nil {
		return devmode.Auth{Token: d.cfg.Dev.Token}, devmode.Targets(d.cfg.Dev.Targets), nil
	}
	if d.cfg.CloudController == nil {
		return nil, nil, nil
	}
	a, err := cfmode.New(ctx, d.bg, d.cfg, d.log, m.Transport)
	if err != nil {
		return nil, nil, err
	}
	return a, a, nil
}

// HTTPAddr and TunnelAddr are the bound addresses.
func (d *Daemon) HTTPAddr() net.Addr   { return d.httpLn.Addr() }
func (d *Daemon) TunnelAddr() net.Addr { return d.tunnelLn.Addr() }

// MetricsAddr is the metrics listener's address, nil when disabled.
func (d *Daemon) MetricsAddr() net.Addr {
	if d.metrics == nil {
		return nil
	}
	return d.metrics.Addr()
}

// Registry is the agent registry, for tests.
func (d *Daemon) Registry() *tunnel.Registry { return d.tun.Registry }

// Run serves until ctx is done or a listener fails, then drains: running
// captures get up to drain_timeout, then end with api_draining.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	tunnelCtx, stopTunnel := context.WithCancel(context.Background())
	defer stopTunnel()
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() {
		if err := d.tun.Serve(tunnelCtx, d.tunnelLn); err != nil {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := d.httpSrv.Serve(d.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	})
	wg.Go(func() {
		if err := d.metrics.Serve(bgCtx); err != nil {
			errc <- err
		}
	})
	if d.cfg.Dev != nil {
		wg.Go(func() { devmode.WarnEvery(bgCtx, d.log, time.Minute) })
	}
	d.srv.SetReady(true)
	d.log.Info("started", "version", buildinfo.Version(), "id", d.cfg.ID, "listen", d.HTTPAddr().String(), "tunnel", d.TunnelAddr().String())

	// SIGUSR1 turns /readyz to 503 while captures are still served: the
	// drain script sends it first, so that route_registrar takes this
	// replica out of the gorouter before the API refuses anything.
	unready := make(chan os.Signal, 1)
	signal.Notify(unready, syscall.SIGUSR1)
	defer signal.Stop(unready)
	var runErr error
wait:
	for {
		select {
		case <-unready:
			d.srv.SetReady(false)
			d.log.Info("unready: /readyz answers 503 so that the router stops sending captures; running and new captures are still served")
		case <-ctx.Done():
			d.log.Info("shutting down: draining captures", "timeout", d.cfg.DrainTimeout.D().String())
			break wait
		case runErr = <-errc:
			d.log.Error("server failed", "error", runErr)
			break wait
		}
	}
	// Finish the running captures before the listeners go; the extra time
	// lets agents drain and the last bytes reach the clients.
	dctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout.D()+10*time.Second)
	defer cancel()
	d.srv.Drain(dctx)
	if err := d.httpSrv.Shutdown(dctx); err != nil {
		d.log.Warn("HTTP shutdown", "error", err)
	}
	stopTunnel()
	stopBackground()
	wg.Wait()
	d.log.Info("stopped")
	return runErr
}

func (d *Daemon) close() {
	d.stopBg()
	for _, c := range d.closers {
		_ = c.Close()
	}
}
