// Command pcap-server-api is the API: it authenticates users, authorizes
// captures against the Cloud Controller, holds the agents' tunnels and
// streams captures to clients.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
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
	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/api"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/audit"
	"github.com/cloudfoundry/pcap-server-release/proxy/devmode"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pcap-server-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/var/vcap/jobs/pcap-server-api/config/pcap-server-api.yml", "configuration file")
	checkOnly := fs.Bool("check-config", false, "validate the configuration, print what is wrong and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.Version())
		return 0
	}
	cfg, err := apiconfig.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *configPath)
		return 0
	}
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintln(stderr, "pcap-server-api:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg *apiconfig.Config, stderr io.Writer) error {
	log, err := logging.New(stderr, cfg.LogLevel, "pcap-server-api")
	if err != nil {
		return err
	}
	auditOut := stderr
	if cfg.AuditLog != "" {
		f, err := os.OpenFile(cfg.AuditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
		defer f.Close()
		auditOut = f
	}

	var auth api.Authenticator
	var resolver api.Resolver
	if cfg.Dev == nil {
		return errors.New("the Cloud Controller integration is not available yet: configure dev")
	}
	auth, resolver = devmode.Auth{Token: cfg.Dev.Token}, devmode.Targets(cfg.Dev.Targets)

	tunnelTLS, err := tlsconfig.MutualServer(cfg.Tunnel.TLS.Certificate, cfg.Tunnel.TLS.PrivateKey, cfg.Tunnel.TLS.ClientCA)
	if err != nil {
		return fmt.Errorf("tunnel TLS: %w", err)
	}
	tun := tunnel.NewServer(tunnel.Config{
		TLS:               tunnelTLS,
		APIID:             cfg.ID,
		APIVersion:        buildinfo.Version(),
		KeepaliveInterval: cfg.Tunnel.KeepaliveInterval.D(),
		TrustClaimedIPs:   cfg.Tunnel.TrustClaimedIPs,
		Logger:            log,
	})
	tunnelLn, err := net.Listen("tcp", cfg.Tunnel.Address)
	if err != nil {
		return fmt.Errorf("tunnel listener: %w", err)
	}
	httpLn, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		tunnelLn.Close()
		return fmt.Errorf("HTTP listener: %w", err)
	}
	if t := cfg.Listen.TLS; t != nil {
		tlsCfg, err := tlsconfig.Server(t.Certificate, t.PrivateKey)
		if err != nil {
			return fmt.Errorf("HTTP TLS: %w", err)
		}
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		httpLn = tls.NewListener(httpLn, tlsCfg)
	}

	srv := api.New(api.Options{
		Limits:       cfg.Limits,
		DrainTimeout: cfg.DrainTimeout.D(),
		CLIDir:       cfg.CLIDir,
		Logger:       log,
		Audit:        audit.New(auditOut),
	}, auth, resolver, tun.Registry)
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	tunnelCtx, stopTunnel := context.WithCancel(context.Background())
	defer stopTunnel()
	warnCtx, stopWarning := context.WithCancel(ctx)
	defer stopWarning()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := tun.Serve(tunnelCtx, tunnelLn); err != nil {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	})
	if cfg.Dev != nil {
		wg.Go(func() { devmode.WarnEvery(warnCtx, log, time.Minute) })
	}
	srv.SetReady(true)
	log.Info("started", "version", buildinfo.Version(), "id", cfg.ID, "listen", httpLn.Addr().String(), "tunnel", tunnelLn.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining captures", "timeout", cfg.DrainTimeout.D().String())
	case runErr = <-errc:
		log.Error("server failed", "error", runErr)
	}
	// Finish the running captures before the listeners go; the extra time
	// lets agents drain and the last bytes reach the clients.
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.D()+10*time.Second)
	defer cancel()
	srv.Drain(dctx)
	if err := httpSrv.Shutdown(dctx); err != nil {
		log.Warn("HTTP shutdown", "error", err)
	}
	stopTunnel()
	stopWarning()
	wg.Wait()
	log.Info("stopped")
	return runErr
}
