// Package agentconfig is the configuration file of the agent
// (pcap-server -config agent.yml), as the BOSH job renders it.
package agentconfig

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/internal/logging"
	"github.com/cloudfoundry/pcap-server-release/internal/metricsserver"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config mirrors the YAML keys of the contract.
type Config struct {
	ID                string   `yaml:"id"`
	LogLevel          string   `yaml:"log_level"`
	CellIPs           []string `yaml:"cell_ips"`
	API               API      `yaml:"api"`
	Garden            Garden   `yaml:"garden"`
	ContainerNetnsDir string   `yaml:"container_netns_dir"`
	RuncRoots         []string `yaml:"runc_roots"`
	Limits            Limits   `yaml:"limits"`
	Metrics           Metrics  `yaml:"metrics"`
	// HostCapture lets the agent capture the VM itself, in its own
	// network namespace. Off unless an operator turns it on.
	HostCapture HostCapture `yaml:"host_capture"`
	// AllowHostCapture is the key host_capture.enabled replaces; true
	// still turns host capture on (see HostCaptureEnabled).
	AllowHostCapture bool `yaml:"allow_host_capture"`
	// Bosh is the VM's BOSH identity from the job spec, which the agent
	// sends in its hello; without it (or without its deployment or id)
	// the API cannot match the agent to a director's instance, so the VM
	// cannot be captured as a host.
	Bosh *Bosh `yaml:"bosh"`
	Dev  *Dev  `yaml:"dev"`
}

type HostCapture struct {
	Enabled bool `yaml:"enabled"`
}

// Bosh is the VM's identity as BOSH knows it: spec.deployment, spec.name,
// spec.id, spec.index and spec.az.
type Bosh struct {
	Deployment    string `yaml:"deployment"`
	InstanceGroup string `yaml:"instance_group"`
	ID            string `yaml:"id"`
	Index         int    `yaml:"index"`
	AZ            string `yaml:"az"`
}

// Instance is the identity as the protocol carries it; nil without one.
func (b *Bosh) Instance() *wire.BoshInstance {
	if b == nil {
		return nil
	}
	return &wire.BoshInstance{Deployment: b.Deployment, InstanceGroup: b.InstanceGroup, ID: b.ID, Index: b.Index, AZ: b.AZ}
}

// HostCaptureEnabled is whether the agent captures the VM itself when
// asked: host_capture.enabled, or the older allow_host_capture, which
// meant the same for the cell's namespace and keeps working (a true in
// either turns it on, so a config that still renders the old key as false
// beside the new one does not turn it off).
func (c *Config) HostCaptureEnabled() bool { return c.HostCapture.Enabled || c.AllowHostCapture }

type API struct {
	Addresses         []string            `yaml:"addresses"`
	TLS               ClientTLS           `yaml:"tls"`
	ResolveInterval   configfile.Duration `yaml:"resolve_interval"`
	KeepaliveInterval configfile.Duration `yaml:"keepalive_interval"`
}

type ClientTLS struct {
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
	CA          string `yaml:"ca"`
	ServerName  string `yaml:"server_name"`
}

type Garden struct {
	Network string `yaml:"network"`
	Address string `yaml:"address"`
	// ContainerOwnerName is the executor:owner property of the app
	// containers: the rep's diego.executor.container_owner_name.
	ContainerOwnerName string `yaml:"container_owner_name"`
}

// DefaultContainerOwnerName is the rep's default container_owner_name.
const DefaultContainerOwnerName = "executor"

type Limits struct {
	MaxCaptures int                 `yaml:"max_captures"`
	BufferBytes configfile.ByteSize `yaml:"buffer_bytes"`
	ReadTimeout configfile.Duration `yaml:"read_timeout"`
	// GOMAXPROCS bounds the cores the agent's Go code runs on at once:
	// Go's default, every core, would let a burst of captures take a
	// many-core cell's CPU from its apps.
	GOMAXPROCS int `yaml:"gomaxprocs"`
}

// MaxGOMAXPROCS is the most limits.gomaxprocs may say.
const MaxGOMAXPROCS = 256

// Metrics is the Prometheus listener: the same keys in both binaries.
type Metrics = metricsserver.Config

// Dev replaces the garden lookup by a fixed map, for the local demo.
type Dev struct {
	// Netns maps "APP_GUID/INDEX" to a network namespace path.
	Netns map[string]string `yaml:"netns"`
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		LogLevel: "info",
		API: API{
			TLS:               ClientTLS{ServerName: "pcap-server-api.service.cf.internal"},
			ResolveInterval:   configfile.Duration(30 * time.Second),
			KeepaliveInterval: configfile.Duration(10 * time.Second),
		},
		Garden:            Garden{Network: "unix", Address: "/var/vcap/data/garden/garden.sock", ContainerOwnerName: DefaultContainerOwnerName},
		ContainerNetnsDir: "/var/vcap/data/garden-cni/container-netns",
		RuncRoots:         []string{"/run/containerd/runc/garden", "/run/runc"},
		Limits: Limits{
			MaxCaptures: 5,
			BufferBytes: 8 << 20,
			ReadTimeout: configfile.Duration(50 * time.Millisecond),
			GOMAXPROCS:  2,
		},
		Metrics: Metrics{Address: "127.0.0.1:9496"},
	}
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return nil, err
	}
	if err := c.complete(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// complete fills in what is derived from the host, then validates.
func (c *Config) complete() error {
	if b := c.Bosh; b != nil && (b.Deployment == "" || b.ID == "") {
		// A template rendered where BOSH gives no deployment or id (a
		// director's own VM, a trial outside BOSH) names no VM: the agent
		// still captures apps, and cannot be taken for a VM.
		c.Bosh = nil
	}
	if c.ID == "" && c.Bosh != nil {
		c.ID = c.Bosh.ID
	}
	if c.ID == "" {
		c.ID, _ = os.Hostname()
	}
	if len(c.CellIPs) == 0 {
		ips, err := hostIPs()
		if err != nil {
			return fmt.Errorf("cell_ips not set and the host's addresses are unknown: %w", err)
		}
		c.CellIPs = ips
	}
	return c.Validate()
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var p configfile.Problems
	if c.ID == "" {
		p.Addf("id is required")
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		p.Addf("log_level: %v", err)
	}
	if len(c.CellIPs) == 0 {
		p.Addf("cell_ips is empty")
	}
	for _, ip := range c.CellIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			p.Addf("cell_ips: %q is not an IP address", ip)
		}
	}
	if len(c.API.Addresses) == 0 {
		p.Addf("api.addresses is empty: name at least one API tunnel address (host:port)")
	}
	for _, a := range c.API.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.Addf("api.addresses: %q is not host:port", a)
		}
	}
	p.RequireFile("api.tls.certificate", c.API.TLS.Certificate)
	p.RequireFile("api.tls.private_key", c.API.TLS.PrivateKey)
	p.RequireFile("api.tls.ca", c.API.TLS.CA)
	if c.API.TLS.ServerName == "" {
		p.Addf("api.tls.server_name is required: the name in the API's tunnel certificate")
	}
	if c.API.ResolveInterval.D() < time.Second {
		p.Addf("api.resolve_interval %s is below 1s", c.API.ResolveInterval.D())
	}
	if c.API.KeepaliveInterval.D() < time.Second {
		p.Addf("api.keepalive_interval %s is below 1s", c.API.KeepaliveInterval.D())
	}
	if c.Dev == nil {
		if c.Garden.Network != "unix" && c.Garden.Network != "tcp" {
			p.Addf("garden.network %q: want unix or tcp", c.Garden.Network)
		}
		if c.Garden.Address == "" {
			p.Addf("garden.address is required")
		}
		if err := validOwnerName(c.Garden.ContainerOwnerName); err != nil {
			p.Addf("garden.container_owner_name: %v", err)
		}
	} else {
		for key, path := range c.Dev.Netns {
			if app, idx, ok := strings.Cut(key, "/"); !ok || app == "" || idx == "" {
				p.Addf("dev.netns: key %q is not APP_GUID/INDEX", key)
			}
			if path == "" {
				p.Addf("dev.netns[%s]: empty path", key)
			}
		}
	}
	if c.Bosh != nil {
		if err := c.Bosh.Instance().Validate(); err != nil {
			p.Addf("%v", err)
		}
	}
	if c.Limits.MaxCaptures < 1 {
		p.Addf("limits.max_captures must be at least 1")
	}
	if b := c.Limits.BufferBytes; b < 1<<20 || b > 1<<30 {
		p.Addf("limits.buffer_bytes %s is outside 1MiB..1GiB", b)
	}
	if d := c.Limits.ReadTimeout.D(); d < time.Millisecond || d > time.Second {
		p.Addf("limits.read_timeout %s is outside 1ms..1s", d)
	}
	if n := c.Limits.GOMAXPROCS; n < 1 || n > MaxGOMAXPROCS {
		p.Addf("limits.gomaxprocs %d is outside 1..%d", n, MaxGOMAXPROCS)
	}
	if c.Metrics.Address != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Address); err != nil {
			p.Addf("metrics.address %q is not host:port", c.Metrics.Address)
		}
	}
	c.Metrics.Validate(&p)
	return p.Err()
}

// validOwnerName checks a container owner name: the rep's
// container_owner_name, a garden property value the agent filters on.
func validOwnerName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty: set the rep's diego.executor.container_owner_name (%s by default)", DefaultContainerOwnerName)
	case len(name) > 255:
		return fmt.Errorf("%d bytes, at most 255", len(name))
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%q holds control characters or invalid UTF-8", name)
	}
	return nil
}

// hostIPs lists the host's global unicast addresses.
func hostIPs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			ips = append(ips, n.IP.String())
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no global unicast address")
	}
	return ips, nil
}
