// Package apiconfig is the configuration file of the API
// (pcap-server-api -config api.yml), as the BOSH job renders it.
package apiconfig

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/internal/logging"
	"github.com/cloudfoundry/pcap-server-release/internal/metricsserver"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config mirrors the YAML keys of the contract.
type Config struct {
	ID              string              `yaml:"id"`
	LogLevel        string              `yaml:"log_level"`
	Listen          Listen              `yaml:"listen"`
	Tunnel          Tunnel              `yaml:"tunnel"`
	Metrics         Metrics             `yaml:"metrics"`
	CloudController *CloudController    `yaml:"cloud_controller"`
	UAA             UAA                 `yaml:"uaa"`
	Authorization   Authorization       `yaml:"authorization"`
	Limits          Limits              `yaml:"limits"`
	Stream          Stream              `yaml:"stream"`
	DrainTimeout    configfile.Duration `yaml:"drain_timeout"`
	// AuditLog is a file path; empty means stderr.
	AuditLog string `yaml:"audit_log"`
	CLIDir   string `yaml:"cli_dir"`
	Dev      *Dev   `yaml:"dev"`
	// Bosh turns on the captures of BOSH VMs; nil: their endpoints do not
	// exist and no director is contacted.
	Bosh *Bosh `yaml:"bosh"`
}

// Bosh is the BOSH director whose deployments' VMs operators capture.
type Bosh struct {
	// DirectorURL is https://DIRECTOR:25555.
	DirectorURL string `yaml:"director_url"`
	// CA is the director's CA; empty trusts the system roots.
	CA  string  `yaml:"ca"`
	UAA BoshUAA `yaml:"uaa"`
}

// BoshUAA is the director's UAA, whose tokens operators send.
type BoshUAA struct {
	// Issuer defaults to the director's /info user_authentication
	// options.url + /oauth/token, read over a verified connection.
	Issuer string `yaml:"issuer"`
	// CA is the UAA's CA; empty means bosh.ca and the system roots (in
	// bosh-deployment the director and its UAA share one CA).
	CA string `yaml:"ca"`
}

type Listen struct {
	Address string     `yaml:"address"`
	TLS     *ServerTLS `yaml:"tls"`
}

type ServerTLS struct {
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
}

type Tunnel struct {
	Address           string              `yaml:"address"`
	TLS               TunnelTLS           `yaml:"tls"`
	KeepaliveInterval configfile.Duration `yaml:"keepalive_interval"`
	// TrustClaimedIPs registers agents under every IP they claim instead
	// of only their connection's source address: for cells behind NAT.
	TrustClaimedIPs bool `yaml:"trust_claimed_ips"`
}

type TunnelTLS struct {
	Certificate string `yaml:"certificate"`
	PrivateKey  string `yaml:"private_key"`
	ClientCA    string `yaml:"client_ca"`
}

// Metrics is the Prometheus listener: the same keys in both binaries.
type Metrics = metricsserver.Config

type CloudController struct {
	URL           string `yaml:"url"`
	CA            string `yaml:"ca"`
	SkipTLSVerify bool   `yaml:"skip_tls_verify"`
}

type UAA struct {
	// Issuer defaults to the CC root document's links.uaa + /oauth/token,
	// which needs a verified Cloud Controller connection.
	Issuer string `yaml:"issuer"`
	CA     string `yaml:"ca"`
}

type Authorization struct {
	Mode string `yaml:"mode"`
	// FollowSSHPolicy makes a non-admin's capture need what cf ssh
	// needs: the Cloud Controller's ssh_enabled for the app.
	FollowSSHPolicy bool `yaml:"follow_ssh_policy"`
}

// Authorization modes.
const (
	ModeSpaceDeveloper = "space_developer"
	ModeAdminOnly      = "admin_only"
)

type Limits struct {
	CapturesPerUser  int                 `yaml:"captures_per_user"`
	CapturesPerAgent int                 `yaml:"captures_per_agent"`
	CapturesTotal    int                 `yaml:"captures_total"`
	MaxDuration      configfile.Duration `yaml:"max_duration"`
	DefaultDuration  configfile.Duration `yaml:"default_duration"`
	MaxBytes         configfile.ByteSize `yaml:"max_bytes"`
	MaxSnaplen       int                 `yaml:"max_snaplen"`
	// BufferBytes bounds what one capture holds for a slow client.
	BufferBytes configfile.ByteSize `yaml:"buffer_bytes"`
}

// Stream is how the API keeps a capture's response alive and bounded
// while it streams.
type Stream struct {
	// WriteTimeout is how long one write to the client may take before
	// the client counts as gone (client_gone). It bounds a client that
	// stopped reading; it never ends a capture that is merely quiet.
	WriteTimeout configfile.Duration `yaml:"write_timeout"`
	// StatsInterval is how often a pcapng stream gets interface
	// statistics, packets or not, so that a quiet capture still sends
	// bytes through load balancers that cut idle connections.
	StatsInterval configfile.Duration `yaml:"stats_interval"`
}

// MaxStatsInterval keeps a quiet pcapng stream busier than the idle
// timeout of the load balancers in front of gorouters: AWS ELB's default
// is 60 s.
const MaxStatsInterval = 30 * time.Second

// Dev replaces UAA and the Cloud Controller by a fixed token and targets.
type Dev struct {
	Token   string      `yaml:"token"`
	Targets []DevTarget `yaml:"targets"`
}

type DevTarget struct {
	AppGUID string `yaml:"app_guid"`
	AppName string `yaml:"app_name"`
	Process string `yaml:"process"`
	Index   int    `yaml:"index"`
	CellIP  string `yaml:"cell_ip"`
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		LogLevel: "info",
		Listen:   Listen{Address: "0.0.0.0:8080"},
		Tunnel: Tunnel{
			Address:           "0.0.0.0:9494",
			KeepaliveInterval: configfile.Duration(10 * time.Second),
		},
		Metrics:       Metrics{Address: "0.0.0.0:9495"},
		Authorization: Authorization{Mode: ModeSpaceDeveloper, FollowSSHPolicy: true},
		Limits: Limits{
			CapturesPerUser:  3,
			CapturesPerAgent: 5,
			CapturesTotal:    200,
			MaxDuration:      configfile.Duration(15 * time.Minute),
			DefaultDuration:  configfile.Duration(5 * time.Minute),
			MaxBytes:         2 << 30,
			MaxSnaplen:       65535,
			BufferBytes:      16 << 20,
		},
		Stream: Stream{
			WriteTimeout:  configfile.Duration(time.Minute),
			StatsInterval: configfile.Duration(5 * time.Second),
		},
		DrainTimeout: configfile.Duration(30 * time.Second),
	}
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return nil, err
	}
	if c.ID == "" {
		c.ID, _ = os.Hostname()
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

var guidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var p configfile.Problems
	if c.ID == "" {
		p.Addf("id is required")
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		p.Addf("log_level: %v", err)
	}
	hostPort(&p, "listen.address", c.Listen.Address, true)
	if t := c.Listen.TLS; t != nil {
		p.RequireFile("listen.tls.certificate", t.Certificate)
		p.RequireFile("listen.tls.private_key", t.PrivateKey)
	}
	hostPort(&p, "tunnel.address", c.Tunnel.Address, true)
	p.RequireFile("tunnel.tls.certificate", c.Tunnel.TLS.Certificate)
	p.RequireFile("tunnel.tls.private_key", c.Tunnel.TLS.PrivateKey)
	p.RequireFile("tunnel.tls.client_ca", c.Tunnel.TLS.ClientCA)
	if c.Tunnel.KeepaliveInterval.D() < time.Second {
		p.Addf("tunnel.keepalive_interval %s is below 1s", c.Tunnel.KeepaliveInterval.D())
	}
	hostPort(&p, "metrics.address", c.Metrics.Address, false)
	c.Metrics.Validate(&p)

	switch {
	case c.Dev != nil && c.CloudController != nil:
		p.Addf("dev and cloud_controller are both set: dev mode replaces the Cloud Controller and UAA, use one or the other")
	case c.Dev == nil && c.CloudController == nil && c.Bosh == nil:
		p.Addf("cloud_controller.url is required (or dev, for a local trial, or bosh alone, for an API that captures only BOSH VMs)")
	case c.Dev == nil && c.CloudController == nil:
	case c.Dev != nil:
		c.validateDev(&p)
	default:
		c.validateCF(&p)
	}
	if c.Bosh != nil {
		c.validateBosh(&p)
	}
	switch c.Authorization.Mode {
	case ModeSpaceDeveloper, ModeAdminOnly:
	default:
		p.Addf("authorization.mode %q: want %s or %s", c.Authorization.Mode, ModeSpaceDeveloper, ModeAdminOnly)
	}

	l := c.Limits
	for _, lim := range []struct {
		key string
		v   int
	}{{"captures_per_user", l.CapturesPerUser}, {"captures_per_agent", l.CapturesPerAgent}, {"captures_total", l.CapturesTotal}} {
		if lim.v < 1 {
			p.Addf("limits.%s must be at least 1", lim.key)
		}
	}
	if l.MaxDuration.D() <= 0 {
		p.Addf("limits.max_duration must be positive")
	}
	if l.DefaultDuration.D() <= 0 || l.DefaultDuration.D() > l.MaxDuration.D() {
		p.Addf("limits.default_duration %s must be positive and at most limits.max_duration %s", l.DefaultDuration.D(), l.MaxDuration.D())
	}
	if l.MaxBytes < 1<<10 {
		p.Addf("limits.max_bytes %s is below 1KiB", l.MaxBytes)
	}
	if l.MaxSnaplen < 1 || l.MaxSnaplen > wire.MaxSnaplen {
		p.Addf("limits.max_snaplen %d is outside 1..%d", l.MaxSnaplen, wire.MaxSnaplen)
	}
	if l.BufferBytes < 1<<20 {
		p.Addf("limits.buffer_bytes %s is below 1MiB", l.BufferBytes)
	}
	if c.Stream.WriteTimeout.D() <= 0 {
		p.Addf("stream.write_timeout must be positive")
	}
	if d := c.Stream.StatsInterval.D(); d < 10*time.Millisecond || d > MaxStatsInterval {
		p.Addf("stream.stats_interval %s is outside 10ms..%s: a quiet pcapng capture must send something more often than a load balancer's idle timeout (60s on AWS ELB)", d, MaxStatsInterval)
	}
	if c.DrainTimeout.D() < 0 {
		p.Addf("drain_timeout is negative")
	}
	if c.CLIDir != "" {
		if st, err := os.Stat(c.CLIDir); err != nil || !st.IsDir() {
			p.Addf("cli_dir %s is not a directory", c.CLIDir)
		}
	}
	return p.Err()
}

func (c *Config) validateDev(p *configfile.Problems) {
	if len(c.Dev.Token) < 16 {
		p.Addf("dev.token must be at least 16 characters")
	}
	if len(c.Dev.Targets) == 0 {
		p.Addf("dev.targets is empty")
	}
	for i, t := range c.Dev.Targets {
		if !guidPattern.MatchString(t.AppGUID) {
			p.Addf("dev.targets[%d].app_guid %q is not a GUID", i, t.AppGUID)
		}
		if t.Index < 0 {
			p.Addf("dev.targets[%d].index is negative", i)
		}
		if _, err := netip.ParseAddr(t.CellIP); err != nil {
			p.Addf("dev.targets[%d].cell_ip %q is not an IP address", i, t.CellIP)
		}
	}
}

func (c *Config) validateCF(p *configfile.Problems) {
	cc := c.CloudController
	if u, err := url.Parse(cc.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		p.Addf("cloud_controller.url %q must be an https URL such as https://api.SYSTEM_DOMAIN", cc.URL)
	}
	if cc.CA != "" {
		p.RequireFile("cloud_controller.ca", cc.CA)
	}
	if c.UAA.Issuer != "" {
		if u, err := url.Parse(c.UAA.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			p.Addf("uaa.issuer %q must be an https URL such as https://uaa.SYSTEM_DOMAIN/oauth/token", c.UAA.Issuer)
		}
	} else if cc.SkipTLSVerify {
		// The issuer decides whose keys sign the tokens the API trusts;
		// found through an unverified connection, whoever answers in the
		// Cloud Controller's place would choose it.
		p.Addf("cloud_controller.skip_tls_verify is true and uaa.issuer is not set: the API would learn which UAA signs its tokens over a Cloud Controller connection it does not verify; set uaa.issuer (https://uaa.SYSTEM_DOMAIN/oauth/token), or verify the Cloud Controller (cloud_controller.ca)")
	}
	if c.UAA.CA != "" {
		p.RequireFile("uaa.ca", c.UAA.CA)
	}
}

func (c *Config) validateBosh(p *configfile.Problems) {
	b := c.Bosh
	// https only: the director names the UAA whose keys the API trusts,
	// which must never be learnt over a connection that is not verified.
	if u, err := url.Parse(b.DirectorURL); err != nil || u.Scheme != "https" || u.Host == "" {
		p.Addf("bosh.director_url %q must be an https URL such as https://DIRECTOR:25555", b.DirectorURL)
	}
	if b.CA != "" {
		p.RequireFile("bosh.ca", b.CA)
	}
	if b.UAA.Issuer != "" {
		if u, err := url.Parse(b.UAA.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			p.Addf("bosh.uaa.issuer %q must be an https URL such as https://DIRECTOR:8443/oauth/token", b.UAA.Issuer)
		}
	}
	if b.UAA.CA != "" {
		p.RequireFile("bosh.uaa.ca", b.UAA.CA)
	}
}

func hostPort(p *configfile.Problems, key, v string, required bool) {
	if v == "" {
		if required {
			p.Addf("%s is required", key)
		}
		return
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		p.Addf("%s %q is not host:port", key, v)
	}
}
