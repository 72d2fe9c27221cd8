package agentconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

func load(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestLoadWithDefaults(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c", "k", "ca"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := load(t, `
id: 6a3c
cell_ips: [10.0.16.5]
api:
  addresses: ["pcap-server-api.service.cf.internal:9494"]
  tls: {certificate: `+dir+`/c, private_key: `+dir+`/k, ca: `+dir+`/ca}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.BufferBytes != 8<<20 || c.Limits.ReadTimeout.D() != 50*time.Millisecond || c.Limits.MaxCaptures != 5 || c.Limits.GOMAXPROCS != 2 ||
		c.Garden.Address != "/var/vcap/data/garden/garden.sock" || c.Garden.ContainerOwnerName != "executor" || c.API.TLS.ServerName != "pcap-server-api.service.cf.internal" ||
		c.ContainerNetnsDir != "/var/vcap/data/garden-cni/container-netns" || len(c.RuncRoots) != 2 || c.HostCaptureEnabled() || c.Bosh != nil ||
		c.Metrics.Address != "127.0.0.1:9496" || c.Metrics.MutualTLS().Enabled() {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestHostCaptureAndBoshIdentity(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c", "k", "ca"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := `
cell_ips: [10.0.16.5]
api:
  addresses: ["pcap-server-api.service.cf.internal:9494"]
  tls: {certificate: ` + dir + `/c, private_key: ` + dir + `/k, ca: ` + dir + `/ca}
`
	c, err := load(t, base+`
host_capture: {enabled: true}
bosh: {deployment: cf, instance_group: router, id: 6a3c-uuid, index: 1, az: z2}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.BoshInstance{Deployment: "cf", InstanceGroup: "router", ID: "6a3c-uuid", Index: 1, AZ: "z2"}
	if !c.HostCaptureEnabled() || *c.Bosh.Instance() != want || c.ID != "6a3c-uuid" {
		t.Fatalf("host capture %v, identity %+v, id %q", c.HostCaptureEnabled(), c.Bosh.Instance(), c.ID)
	}
	// The older key still turns it on, even beside the new one unset or
	// false, as a template that renders both would write it.
	for _, y := range []string{"allow_host_capture: true\n", "allow_host_capture: true\nhost_capture: {enabled: false}\n"} {
		if c, err := load(t, base+y); err != nil || !c.HostCaptureEnabled() {
			t.Errorf("%q: host capture %v, %v", y, c != nil && c.HostCaptureEnabled(), err)
		}
	}
	if c, err := load(t, base+"allow_host_capture: false\nhost_capture: {enabled: true}\n"); err != nil || !c.HostCaptureEnabled() {
		t.Errorf("host_capture.enabled beside allow_host_capture false: %v", err)
	}
	_, err = load(t, base+`
bosh: {deployment: cf, instance_group: "router/0", id: 6a3c-uuid, index: -1}
`)
	if err == nil || !strings.Contains(err.Error(), "bosh.") {
		t.Fatalf("a bad identity: %v", err)
	}
	// Where BOSH gives no deployment or id the agent has no identity,
	// and still starts.
	for _, y := range []string{"bosh: {deployment: '', instance_group: router, id: 6a3c-uuid}\n", "bosh: {deployment: cf, instance_group: '', id: ''}\n"} {
		if c, err := load(t, base+y); err != nil || c.Bosh != nil {
			t.Errorf("%q: identity %+v, %v", y, c.Bosh, err)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := load(t, `
id: x
cell_ips: [cell-1]
api: {addresses: [no-port], resolve_interval: 10ms}
garden: {network: udp}
limits: {buffer_bytes: 100KiB, read_timeout: 5s, max_captures: 0, gomaxprocs: 0}
metrics: {cert: /nonexistent/cert, key: /nonexistent/key}
dev: {netns: {"no-index": /run/netns/x}}
`)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`cell_ips: "cell-1" is not an IP address`,
		`api.addresses: "no-port" is not host:port`,
		"api.tls.certificate is required",
		"api.resolve_interval 10ms is below 1s",
		`dev.netns: key "no-index" is not APP_GUID/INDEX`,
		"limits.max_captures must be at least 1",
		"limits.buffer_bytes 100KiB is outside 1MiB..1GiB",
		"limits.read_timeout 5s is outside 1ms..1s",
		"limits.gomaxprocs 0 is outside 1..256",
		"metrics.ca_cert, metrics.cert, metrics.key go together: set all of them or none (given: metrics.cert, metrics.key)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "garden.network") {
		t.Error("garden is checked although dev mode replaces it")
	}
}

// garden.container_owner_name is what the rep's container_owner_name
// says: a property value, never empty.
func TestGardenContainerOwnerName(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c", "k", "ca"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := func(owner string) string {
		return `
id: 6a3c
cell_ips: [10.0.16.5]
api:
  addresses: ["a:9494"]
  tls: {certificate: ` + dir + `/c, private_key: ` + dir + `/k, ca: ` + dir + `/ca}
garden: {container_owner_name: ` + owner + `}
`
	}
	c, err := load(t, config("cell-executor"))
	if err != nil || c.Garden.ContainerOwnerName != "cell-executor" || c.Garden.Address != "/var/vcap/data/garden/garden.sock" {
		t.Fatalf("owner name: %+v, %v", c, err)
	}
	for owner, want := range map[string]string{
		`""`:                          "garden.container_owner_name: empty: set the rep's diego.executor.container_owner_name (executor by default)",
		`"a\u0000b"`:                  `garden.container_owner_name: "a\x00b" holds control characters`,
		strings.Repeat("x", 256):      "garden.container_owner_name: 256 bytes, at most 255",
		`"\u00e9xecutor-\u2603"`:      "",
		`"executor with spaces.and:"`: "",
	} {
		_, err := load(t, config(owner))
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", owner, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", owner, err, want)
		}
	}
}

func TestMetricsTLSFilesMustBeReadable(t *testing.T) {
	_, err := load(t, `
id: x
cell_ips: [10.0.16.5]
api: {addresses: ["a:9494"]}
metrics: {ca_cert: /nonexistent/ca, cert: /nonexistent/cert, key: /nonexistent/key}
`)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, key := range []string{"metrics.ca_cert", "metrics.cert", "metrics.key"} {
		if !strings.Contains(err.Error(), key+": open /nonexistent/") {
			t.Errorf("missing the unreadable %s in:\n%v", key, err)
		}
	}
}
