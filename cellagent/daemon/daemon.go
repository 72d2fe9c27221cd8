// Package daemon is the pcap-server process on a cell: it wires the
// container lookup, the capture service and the tunnel client together
// from the configuration, and on shutdown lets running captures end with
// agent_draining before the tunnels close.
package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agent"
	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/cellagent/agentmetrics"
	"github.com/cloudfoundry/pcap-server-release/cellagent/garden"
	"github.com/cloudfoundry/pcap-server-release/cellagent/tunnel"
	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
	"github.com/cloudfoundry/pcap-server-release/internal/logging"
	"github.com/cloudfoundry/pcap-server-release/internal/metricsserver"
	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Options are settings that are not in the configuration file.
type Options struct {
	// LogOutput receives the JSON log lines.
	LogOutput io.Writer
	// LocalAddr is the source address of tunnel connections (tests that
	// play several cells on one machine).
	LocalAddr net.Addr
}

// Daemon is a configured agent.
type Daemon struct {
	cfg     *agentconfig.Config
	log     *slog.Logger
	agent   *agent.Agent
	client  *tunnel.Client
	metrics *metricsserver.Server
	garden  *garden.Locator // nil in dev mode
}

// New builds the agent from its configuration.
func New(cfg *agentconfig.Config, o Options) (*Daemon, error) {
	log, err := logging.New(o.LogOutput, cfg.LogLevel, "pcap-server")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsconfig.MutualClient(cfg.API.TLS.Certificate, cfg.API.TLS.PrivateKey, cfg.API.TLS.CA, cfg.API.TLS.ServerName)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log}
	var locator agent.Locator
	if cfg.Dev != nil {
		log.Warn("dev mode: containers are taken from dev.netns, not from garden")
		locator = agent.StaticLocator(cfg.Dev.Netns)
	} else {
		g, err := garden.New(garden.Config{
			Network:            cfg.Garden.Network,
			Address:            cfg.Garden.Address,
			ContainerNetnsDir:  cfg.ContainerNetnsDir,
			RuncRoots:          cfg.RuncRoots,
			ContainerOwnerName: cfg.Garden.ContainerOwnerName,
			Logger:             log,
		})
		if err != nil {
			return nil, err
		}
		d.garden = g
		locator = g
	}
	reg := metricsserver.NewRegistry("pcap_agent")
	m := agentmetrics.New(reg)
	if d.metrics, err = metricsserver.Listen(cfg.Metrics.Address, cfg.Metrics.MutualTLS(), reg, log); err != nil {
		return nil, err
	}
	d.agent = agent.New(agent.Options{
		MaxCaptures: cfg.Limits.MaxCaptures,
		RingBytes:   int(cfg.Limits.BufferBytes),
		ReadTimeout: cfg.Limits.ReadTimeout.D(),
		HostCapture: cfg.HostCaptureEnabled(),
		Bosh:        cfg.Bosh.Instance(),
		Locator:     locator,
		Logger:      log,
		Metrics:     m,
	})
	d.client = tunnel.New(tunnel.Config{
		Addresses:         cfg.API.Addresses,
		TLS:               tlsCfg,
		ResolveInterval:   cfg.API.ResolveInterval.D(),
		KeepaliveInterval: cfg.API.KeepaliveInterval.D(),
		Hello: wire.Hello{
			AgentID:      cfg.ID,
			AgentVersion: buildinfo.Version(),
			CellIPs:      cfg.CellIPs,
			MaxCaptures:  cfg.Limits.MaxCaptures,
			Bosh:         cfg.Bosh.Instance(),
			HostCapture:  cfg.HostCaptureEnabled(),
		},
		Handle:    d.agent.ServeStream,
		Logger:    log,
		LocalAddr: o.LocalAddr,
		Metrics:   m,
	})
	return d, nil
}

// MetricsAddr is the metrics listener's address, nil when disabled.
func (d *Daemon) MetricsAddr() net.Addr {
	if d.metrics == nil {
		return nil
	}
	return d.metrics.Addr()
}

// Run holds the tunnels until ctx is done, then lets captures drain. The
// metrics stay up until the captures have ended.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.metrics.Close()
	if d.garden != nil {
		defer d.garden.Close()
		// Say at once when garden is not there; lookups will retry anyway.
		// On a VM that is no cell (host capture, no containers) that is
		// expected.
		if err := d.garden.Ping(ctx); err != nil && d.cfg.HostCaptureEnabled() {
			d.log.Info("garden does not answer: no app containers can be captured here, the VM itself can", "error", err)
		} else if err != nil {
			d.log.Warn("garden does not answer yet", "error", err)
		}
	}
	d.log.Info("starting", "version", buildinfo.Version(), "id", d.cfg.ID, "cell_ips", d.cfg.CellIPs, "api", d.cfg.API.Addresses,
		"host_capture", d.cfg.HostCaptureEnabled(), "gomaxprocs", runtime.GOMAXPROCS(0))
	if d.cfg.HostCaptureEnabled() && d.cfg.Bosh == nil {
		d.log.Warn("host capture is on, but the agent has no BOSH identity (bosh.deployment and bosh.id): the API cannot take it for a VM of the director's")
	}
	if d.cfg.AllowHostCapture {
		d.log.Warn("allow_host_capture is deprecated: set host_capture.enabled instead (both turn host capture on)")
	}
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	metricsErr := make(chan error, 1)
	go func() { metricsErr <- d.metrics.Serve(metricsCtx) }()
	err := d.client.Run(ctx)
	stopMetrics()
	if merr := <-metricsErr; err == nil {
		err = merr
	}
	d.log.Info("stopped")
	return err
}
