package apiconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.yml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestLoadDevConfigWithDefaults(t *testing.T) {
	dir := writeFiles(t, "c", "k", "ca")
	c, err := load(t, `
id: api/0
tunnel: {tls: {certificate: `+dir+`/c, private_key: `+dir+`/k, client_ca: `+dir+`/ca}}
dev: {token: a-long-enough-token, targets: [{app_guid: 6a3c, index: 0, cell_ip: 10.0.0.1}]}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Address != "0.0.0.0:8080" || c.Tunnel.Address != "0.0.0.0:9494" || c.Limits.MaxDuration.D() != 15*time.Minute ||
		c.Limits.MaxBytes != 2<<30 || c.Limits.CapturesPerUser != 3 || c.Authorization.Mode != ModeSpaceDeveloper || c.DrainTimeout.D() != 30*time.Second ||
		c.Stream.WriteTimeout.D() != time.Minute || c.Stream.StatsInterval.D() != 5*time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := load(t, `
listen: {address: nowhere}
tunnel: {tls: {certificate: /nonexistent/c}}
cloud_controller: {url: "http://api.example.com"}
dev: {token: short}
authorization: {mode: everyone}
limits: {captures_per_user: 0, max_duration: 1m, default_duration: 5m, max_snaplen: 300000}
stream: {write_timeout: 0s, stats_interval: 45s}
metrics: {ca_cert: /nonexistent/ca}
`)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`listen.address "nowhere" is not host:port`,
		"metrics.ca_cert, metrics.cert, metrics.key go together: set all of them or none (given: metrics.ca_cert)",
		"tunnel.tls.certificate: open /nonexistent/c",
		"tunnel.tls.private_key is required",
		"tunnel.tls.client_ca is required",
		"dev and cloud_controller are both set",
		`authorization.mode "everyone"`,
		"limits.captures_per_user must be at least 1",
		"limits.default_duration 5m0s must be positive and at most limits.max_duration 1m0s",
		"limits.max_snaplen 300000",
		"stream.write_timeout must be positive",
		"stream.stats_interval 45s is outside 10ms..30s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := load(t, "limits: {captures_per_usr: 2}\n")
	if err == nil || !strings.Contains(err.Error(), "captures_per_usr") {
		t.Fatalf("%v", err)
	}
}

func TestCloudControllerMode(t *testing.T) {
	dir := writeFiles(t, "c", "k", "ca")
	_, err := load(t, `
tunnel: {tls: {certificate: `+dir+`/c, private_key: `+dir+`/k, client_ca: `+dir+`/ca}}
cloud_controller: {url: "https://api.sys.example.com"}
uaa: {issuer: "uaa.sys.example.com"}
`)
	if err == nil || !strings.Contains(err.Error(), "uaa.issuer") {
		t.Fatalf("%v", err)
	}
}

// The UAA issuer decides whose keys sign the tokens the API trusts: it is
// never discovered over a Cloud Controller connection that is not verified.
func TestSkipTLSVerifyNeedsAnIssuer(t *testing.T) {
	dir := writeFiles(t, "c", "k", "ca")
	base := `
tunnel: {tls: {certificate: ` + dir + `/c, private_key: ` + dir + `/k, client_ca: ` + dir + `/ca}}
cloud_controller: {url: "https://api.sys.example.com", skip_tls_verify: true}
`
	_, err := load(t, base)
	if err == nil {
		t.Fatal("skip_tls_verify without uaa.issuer accepted")
	}
	for _, want := range []string{"cloud_controller.skip_tls_verify", "uaa.issuer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
	if _, err := load(t, base+"uaa: {issuer: \"https://uaa.sys.example.com/oauth/token\"}\n"); err != nil {
		t.Errorf("with uaa.issuer set: %v", err)
	}
}

// bosh alone serves only the captures of BOSH VMs; its URLs are https,
// its files readable.
func TestBosh(t *testing.T) {
	dir := writeFiles(t, "c", "k", "ca", "director-ca")
	base := `
tunnel: {tls: {certificate: ` + dir + `/c, private_key: ` + dir + `/k, client_ca: ` + dir + `/ca}}
`
	c, err := load(t, base+`
bosh: {director_url: "https://10.0.0.6:25555", ca: `+dir+`/director-ca}
`)
	if err != nil || c.Bosh.DirectorURL != "https://10.0.0.6:25555" || c.Bosh.CA != dir+"/director-ca" || c.CloudController != nil || c.Dev != nil {
		t.Fatalf("%+v, %v", c, err)
	}
	_, err = load(t, base+`
bosh: {director_url: "http://10.0.0.6:25555", ca: /nonexistent/ca, uaa: {issuer: "http://10.0.0.6:8443/oauth/token", ca: /nonexistent/uaa-ca}}
`)
	for _, want := range []string{`bosh.director_url "http://10.0.0.6:25555" must be an https URL`, "bosh.ca: open /nonexistent/ca",
		`bosh.uaa.issuer "http://10.0.0.6:8443/oauth/token" must be an https URL`, "bosh.uaa.ca: open /nonexistent/uaa-ca"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if _, err := load(t, base); err == nil || !strings.Contains(err.Error(), "or bosh alone") {
		t.Errorf("neither cloud_controller, dev nor bosh: %v", err)
	}
}

// authorization.follow_ssh_policy is on unless set to false, also when
// the authorization block names only the mode.
func TestFollowSSHPolicyDefaultsToTrue(t *testing.T) {
	dir := writeFiles(t, "c", "k", "ca")
	base := `
tunnel: {tls: {certificate: ` + dir + `/c, private_key: ` + dir + `/k, client_ca: ` + dir + `/ca}}
cloud_controller: {url: "https://api.sys.example.com"}
`
	for extra, want := range map[string]bool{
		"":                                    true,
		"authorization: {mode: admin_only}\n": true,
		"authorization: {follow_ssh_policy: true}\n":                         true,
		"authorization: {follow_ssh_policy: false}\n":                        false,
		"authorization: {mode: space_developer, follow_ssh_policy: false}\n": false,
	} {
		c, err := load(t, base+extra)
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if c.Authorization.FollowSSHPolicy != want {
			t.Errorf("%q: follow_ssh_policy = %v, want %v", extra, c.Authorization.FollowSSHPolicy, want)
		}
	}
	if _, err := load(t, base+"authorization: {follow_ssh_policy: sometimes}\n"); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("follow_ssh_policy: sometimes: %v", err)
	}
}
