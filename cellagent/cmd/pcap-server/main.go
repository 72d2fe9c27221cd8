// Command pcap-server is the agent on every Diego cell: it dials the API
// replicas, and captures in app containers on their request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agent"
	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/internal/logging"
	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pcap-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/var/vcap/jobs/pcap-server/config/pcap-server.yml", "configuration file")
	checkOnly := fs.Bool("check-config", false, "validate the configuration, print what is wrong and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.Version())
		return 0
	}
	cfg, err := agentconfig.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *configPath)
		return 0
	}
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintln(stderr, "pcap-server:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg *agentconfig.Config, stderr io.Writer) error {
	log, err := logging.New(stderr, cfg.LogLevel, "pcap-server")
	if err != nil {
		return err
	}
	tlsCfg, err := tlsconfig.MutualClient(cfg.API.TLS.Certificate, cfg.API.TLS.PrivateKey, cfg.API.TLS.CA, cfg.API.TLS.ServerName)
	if err != nil {
		return err
	}
	var locator agent.Locator
	if cfg.Dev != nil {
		log.Warn("dev mode: containers are taken from dev.netns, not from garden")
		locator = agent.StaticLocator(cfg.Dev.Netns)
	} else {
		return errors.New("garden lookup is not available yet: configure dev.netns")
	}
	ag := agent.New(agent.Options{
		MaxCaptures: cfg.Limits.MaxCaptures,
		RingBytes:   int(cfg.Limits.BufferBytes),
		ReadTimeout: cfg.Limits.ReadTimeout.D(),
		AllowHost:   cfg.AllowHostCapture,
		Locator:     locator,
		Logger:      log,
	})
	client := tunnel.New(tunnel.Config{
		Addresses:         cfg.API.Addresses,
		TLS:               tlsCfg,
		ResolveInterval:   cfg.API.ResolveInterval.D(),
		KeepaliveInterval: cfg.API.KeepaliveInterval.D(),
		Hello: wire.Hello{
			AgentID:      cfg.ID,
			AgentVersion: buildinfo.Version(),
			CellIPs:      cfg.CellIPs,
			MaxCaptures:  cfg.Limits.MaxCaptures,
		},
		Handle: ag.ServeStream,
		Logger: log,
	})
	log.Info("starting", "version", buildinfo.Version(), "id", cfg.ID, "cell_ips", cfg.CellIPs, "api", cfg.API.Addresses)
	err = client.Run(ctx)
	log.Info("stopped")
	return err
}
