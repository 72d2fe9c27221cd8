package boshrelease

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
)

var releaseJobs = []string{"pcap-server", "pcap-server-api", "pcap-server-dashboards"}

// agentProperties sets every property of the agent job, each to a value
// that differs from its default, so that a property read into the wrong
// key shows.
func agentProperties(p *testPKI) map[string]any {
	return map[string]any{
		"log_level":          "debug",
		"cell_ips":           []any{"10.0.16.5", "10.0.17.5"},
		"host_capture":       map[string]any{"enabled": true},
		"allow_host_capture": true,
		"api": map[string]any{
			"addresses": []any{"api-a.example:9494", "api-b.example:9595"},
			"tls": map[string]any{
				"certificate": string(p.agent.CertPEM),
				"private_key": string(p.agent.KeyPEM),
				"ca":          string(p.tunnelCA.CertPEM),
				"server_name": "tunnel.example",
			},
			"resolve_interval":   "45s",
			"keepalive_interval": "7s",
		},
		"garden":              map[string]any{"network": "tcp", "address": "127.0.0.1:7777", "container_owner_name": "cell-executor"},
		"container_netns_dir": "/custom/container-netns",
		"runc_roots":          []any{"/custom/runc"},
		"limits": map[string]any{
			"max_captures": 9,
			"buffer_bytes": 16777216, // a plain number works as well as "16MiB"
			"read_timeout": "20ms",
			"gomaxprocs":   3,
		},
		"metrics": map[string]any{
			"address": "127.0.0.1:19496",
			"ca_cert": string(p.scraperCA.CertPEM), "cert": string(p.agentMetrics.CertPEM), "key": string(p.agentMetrics.KeyPEM),
			"server_name": "agent_metrics.example",
		},
		"dns_alias": map[string]any{"domain": "tunnel.example", "deployment": "capture", "instance_group": "api_vms", "network": "Services"},
	}
}

// apiProperties sets every property of the API job to a non-default value.
func apiProperties(p *testPKI) map[string]any {
	return map[string]any{
		"id":        "api-replica-7",
		"log_level": "warn",
		"listen": map[string]any{
			"address": "127.0.0.1:18443",
			"tls":     map[string]any{"certificate": string(p.apiListen.CertPEM), "private_key": string(p.apiListen.KeyPEM)},
		},
		"tunnel": map[string]any{
			"address": "127.0.0.1:19494",
			"tls": map[string]any{
				"certificate": string(p.apiTunnel.CertPEM),
				"private_key": string(p.apiTunnel.KeyPEM),
				"client_ca":   string(p.tunnelCA.CertPEM),
			},
			"keepalive_interval": "4s",
			"trust_claimed_ips":  true,
		},
		"metrics": map[string]any{
			"address": "127.0.0.1:19495",
			"ca_cert": string(p.scraperCA.CertPEM), "cert": string(p.apiMetrics.CertPEM), "key": string(p.apiMetrics.KeyPEM),
			"server_name": "api_metrics.example",
		},
		"cloud_controller": map[string]any{"url": "https://api.sys.example.com", "ca": string(p.cfCA.CertPEM), "skip_tls_verify": true},
		"uaa":              map[string]any{"issuer": "https://uaa.sys.example.com/oauth/token", "ca": string(p.cfCA.CertPEM)},
		"bosh": map[string]any{
			"director_url": "https://10.0.0.6:25555",
			"ca":           string(p.directorCA.CertPEM),
			"uaa":          map[string]any{"issuer": "https://10.0.0.6:8443/oauth/token", "ca": string(p.directorCA.CertPEM)},
		},
		"authorization": map[string]any{"mode": "admin_only", "follow_ssh_policy": false},
		"limits": map[string]any{
			"captures_per_user": 4, "captures_per_agent": 6, "captures_total": 300,
			"max_duration": "1h", "default_duration": "10m", "max_bytes": "4GiB",
			"max_snaplen": 9000, "buffer_bytes": "32MiB",
		},
		"stream":        map[string]any{"write_timeout": "2m", "stats_interval": "20s"},
		"drain_timeout": "45s",
		"audit_log":     "/var/vcap/sys/log/pcap-server-api/captures.log",
	}
}

// conditionalProperties are optional unless another property is set, as
// it is in the full properties: without them pre-start's -check-config
// refuses, naming both.
var conditionalProperties = map[string]string{
	"uaa.issuer": "cloud_controller.skip_tls_verify",
}

// pairedProperties go together: one without the other fails the render,
// with a message that names the other.
var pairedProperties = map[string]string{
	"listen.tls.certificate": "listen.tls.private_key",
	"listen.tls.private_key": "listen.tls.certificate",
	"metrics.ca_cert":        "metrics.cert",
	"metrics.cert":           "metrics.key",
	"metrics.key":            "metrics.ca_cert",
}

// enablingProperties turn on a part of the configuration that other
// properties set: without them those others fail the render, with a
// message that names them.
var enablingProperties = map[string]string{
	"bosh.director_url": "need bosh.director_url",
}

// requiredProperties are the properties without which a job cannot render.
var requiredProperties = map[string][]string{
	"pcap-server":     {"api.tls.ca", "api.tls.certificate", "api.tls.private_key"},
	"pcap-server-api": {"cloud_controller.url", "tunnel.tls.certificate", "tunnel.tls.client_ca", "tunnel.tls.private_key"},
}

func minimalProperties(t *testing.T, job string, full map[string]any) map[string]any {
	t.Helper()
	props := map[string]any{}
	for _, name := range requiredProperties[job] {
		v, ok := lookupDotted(full, name)
		if !ok {
			t.Fatalf("full properties of %s lack %s", job, name)
		}
		props = setDotted(props, name, v)
	}
	return props
}

func TestJobSpecsListWhatExists(t *testing.T) {
	root := repoRoot(t)
	entries, err := os.ReadDir(filepath.Join(root, "jobs"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if !slices.Equal(dirs, releaseJobs) {
		t.Errorf("jobs/ holds %v, want %v", dirs, releaseJobs)
	}
	for _, job := range dirs {
		dir := filepath.Join(root, "jobs", job)
		spec, err := LoadJobSpec(filepath.Join(dir, "spec"))
		if err != nil {
			t.Error(err)
			continue
		}
		if spec.Name != job {
			t.Errorf("jobs/%s/spec names the job %q", job, spec.Name)
		}
		if !fileExists(filepath.Join(dir, "monit")) {
			t.Errorf("jobs/%s has no monit file", job)
		}

		var files []string
		_ = filepath.WalkDir(filepath.Join(dir, "templates"), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(filepath.Join(dir, "templates"), path)
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		var listed, dests []string
		for src, dest := range spec.Templates {
			listed = append(listed, src)
			dests = append(dests, dest)
		}
		sort.Strings(files)
		sort.Strings(listed)
		if !slices.Equal(files, listed) {
			t.Errorf("jobs/%s: templates/ holds %v, the spec lists %v", job, files, listed)
		}
		sort.Strings(dests)
		if len(slices.Compact(slices.Clone(dests))) != len(dests) {
			t.Errorf("jobs/%s: two templates render to the same file: %v", job, dests)
		}

		for _, pkg := range spec.Packages {
			if !fileExists(filepath.Join(root, "packages", pkg, "spec")) {
				t.Errorf("jobs/%s uses package %s, which packages/ does not have", job, pkg)
			}
		}
		for name, prop := range spec.Properties {
			if strings.TrimSpace(prop.Description) == "" {
				t.Errorf("jobs/%s: property %s has no description", job, name)
			}
		}
	}
}

func TestTemplatesReadDeclaredProperties(t *testing.T) {
	root := repoRoot(t)
	for _, job := range releaseJobs {
		spec := jobSpec(t, job)
		read := map[string]bool{}
		for src := range spec.Templates {
			data, err := os.ReadFile(filepath.Join(root, "jobs", job, "templates", src))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range TemplateProperties(data) {
				read[name] = true
				if _, ok := spec.Properties[name]; !ok {
					t.Errorf("jobs/%s/templates/%s reads %s, which the spec does not declare", job, src, name)
				}
			}
		}
		for name := range spec.Properties {
			if !read[name] {
				t.Errorf("jobs/%s declares %s, which no template reads", job, name)
			}
		}
	}
}

// TestJobsRenderTheBinariesConfig renders both jobs with every property
// set and checks the result with the binaries: the config holds exactly
// the binary's keys, each property lands in the key of its name, the
// certificate files hold the PEMs, and -check-config accepts it all.
func TestJobsRenderTheBinariesConfig(t *testing.T) {
	p := newTestPKI(t)
	tests := []struct {
		job, binary string
		props       map[string]any
		configType  reflect.Type
	}{
		{"pcap-server", "pcap-server", agentProperties(p), reflect.TypeOf(agentconfig.Config{})},
		{"pcap-server-api", "pcap-server-api", apiProperties(p), reflect.TypeOf(apiconfig.Config{})},
	}
	for _, tt := range tests {
		t.Run(tt.job, func(t *testing.T) {
			r := mustRenderJob(t, tt.job, tt.props)
			out, err := checkConfig(t, binary(t, tt.binary), r.path(configFile(tt.job)))
			if err != nil || !strings.Contains(out, "configuration is valid") {
				t.Fatalf("-check-config: %v\n%s", err, out)
			}

			config := r.yaml(t, configFile(tt.job))
			var want []string
			for _, k := range configKeys(tt.configType, "") {
				if !strings.HasPrefix(k, "dev.") { // the local demo's mode, not offered by the jobs
					want = append(want, k)
				}
			}
			if got := leafKeys(config, ""); !slices.Equal(got, want) {
				t.Errorf("rendered keys\n%v\nwant the config's keys\n%v", got, want)
			}

			for name := range jobSpec(t, tt.job).Properties {
				if notConfigKeys[name] {
					continue
				}
				given, _ := lookupDotted(tt.props, name)
				got, ok := lookupDotted(config, name)
				if !ok {
					t.Errorf("property %s has no config key %s", name, name)
					continue
				}
				if pem, isPEM := given.(string); isPEM && strings.HasPrefix(pem, "-----BEGIN") {
					data, err := os.ReadFile(got.(string))
					if err != nil {
						t.Errorf("%s: %v", name, err)
					} else if strings.TrimSpace(string(data)) != strings.TrimSpace(pem) {
						t.Errorf("%s: %s does not hold the property's PEM", name, got)
					}
					continue
				}
				if s, ok := given.(string); ok {
					given = r.rewrite(s)
				}
				if g, w := normalize(got), normalize(given); !reflect.DeepEqual(g, w) {
					t.Errorf("config %s = %#v, property %s = %#v", name, g, name, w)
				}
			}
		})
	}
}

// TestAgentIdentityComesFromTheInstance: the agent's id, the IPs it claims
// and its BOSH identity (which the API matches against the director's
// instance list) are the instance's, also on a director without AZs.
func TestAgentIdentityComesFromTheInstance(t *testing.T) {
	p := newTestPKI(t)
	props := agentProperties(p)
	delete(props, "cell_ips")
	noAZ := testInstance("pcap-server")
	noAZ.AZ, noAZ.Index = "", 0
	for _, inst := range []Instance{testInstance("pcap-server"), noAZ} {
		r, err := renderJobOn(t, "pcap-server", props, inst)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentIdentity(t, r.yaml(t, configFile("pcap-server")), inst, true)
	}
}

// checkAgentIdentity checks what a rendered agent config says of its VM.
func checkAgentIdentity(t *testing.T, config map[string]any, inst Instance, hostCapture bool) {
	t.Helper()
	if config["id"] != inst.ID || !reflect.DeepEqual(config["cell_ips"], []any{inst.IP}) {
		t.Errorf("id %v, cell_ips %v; want the instance's %s, [%s]", config["id"], config["cell_ips"], inst.ID, inst.IP)
	}
	want := map[string]any{"deployment": inst.Deployment, "instance_group": inst.Name, "id": inst.ID, "index": inst.Index, "az": inst.AZ}
	if got := config["bosh"]; !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("bosh = %v, want the instance's %v", got, want)
	}
	if got := config["host_capture"]; !reflect.DeepEqual(got, map[string]any{"enabled": hostCapture}) {
		t.Errorf("host_capture = %v, want enabled: %v", got, hostCapture)
	}
}

// bosh-dns answers for the director's DNS domain (spec.dns_domain_name),
// "bosh" unless the director is configured with another: the alias's
// target must be in that domain, where bosh-dns-aliases puts its targets.
func TestAgentAliasIsInTheDirectorsDNSDomain(t *testing.T) {
	p := newTestPKI(t)
	for domain, want := range map[string]string{
		"":               "*.api-vms.services.capture.bosh", // the director's default
		"bosh":           "*.api-vms.services.capture.bosh",
		"dns.corp.local": "*.api-vms.services.capture.dns.corp.local",
	} {
		t.Run("domain="+domain, func(t *testing.T) {
			inst := testInstance("pcap-server")
			inst.DNSDomainName = domain
			r, err := renderJobOn(t, "pcap-server", agentProperties(p), inst)
			if err != nil {
				t.Fatal(err)
			}
			var aliases map[string][]string
			if err := json.Unmarshal(r.read(t, "dns/aliases.json"), &aliases); err != nil {
				t.Fatalf("dns/aliases.json: %v", err)
			}
			if got := aliases["tunnel.example"]; !slices.Equal(got, []string{want}) {
				t.Errorf("alias tunnel.example -> %v, want [%s] (all: %v)", got, want, aliases)
			}
		})
	}
}

// TestJobDefaultsAreTheBinariesDefaults renders both jobs with only the
// required properties and loads the result with the binaries' config
// packages: what the specs document as defaults must be what runs.
func TestJobDefaultsAreTheBinariesDefaults(t *testing.T) {
	p := newTestPKI(t)

	t.Run("pcap-server", func(t *testing.T) {
		r := mustRenderJob(t, "pcap-server", minimalProperties(t, "pcap-server", agentProperties(p)))
		// The bosh section is the instance's, not a default
		// (TestAgentIdentityComesFromTheInstance): only the rest is compared.
		rendered := r.yaml(t, configFile("pcap-server"))
		delete(rendered, "bosh")
		got, err := agentconfig.Load(writeYAML(t, "pcap-server.yml", rendered))
		if err != nil {
			t.Fatal(err)
		}
		want := agentconfig.Default()
		want.ID = testInstance("pcap-server").ID
		want.CellIPs = []string{testInstance("pcap-server").IP}
		want.API.Addresses = []string{"pcap-server-api.service.cf.internal:9494"}
		want.API.TLS.Certificate = r.path("config/certs/api_tls_certificate.pem")
		want.API.TLS.PrivateKey = r.path("config/certs/api_tls_private_key.pem")
		want.API.TLS.CA = r.path("config/certs/api_tls_ca.pem")
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("loaded\n%+v\nwant\n%+v", *got, want)
		}
	})

	t.Run("pcap-server-api", func(t *testing.T) {
		r := mustRenderJob(t, "pcap-server-api", minimalProperties(t, "pcap-server-api", apiProperties(p)))
		got, err := apiconfig.Load(r.path(configFile("pcap-server-api")))
		if err != nil {
			t.Fatal(err)
		}
		inst := testInstance("pcap-server-api")
		want := apiconfig.Default()
		want.ID = inst.Name + "/" + inst.ID
		want.Tunnel.TLS = apiconfig.TunnelTLS{
			Certificate: r.path("config/certs/tunnel_tls_certificate.pem"),
			PrivateKey:  r.path("config/certs/tunnel_tls_private_key.pem"),
			ClientCA:    r.path("config/certs/tunnel_tls_client_ca.pem"),
		}
		want.CloudController = &apiconfig.CloudController{URL: "https://api.sys.example.com"}
		want.AuditLog = filepath.Join(r.root, "sys/log/pcap-server-api/audit.log")
		want.CLIDir = filepath.Join(r.root, "packages/pcap-server-api/cli")
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("loaded\n%+v\nwant\n%+v", *got, want)
		}
		if got.Listen.TLS != nil {
			t.Error("listen.tls is set without the listen.tls properties")
		}
	})
}

// TestRequiredProperties leaves out, one at a time, every property that
// has no default: the required ones fail the render with a message naming
// them, the optional ones render a config the binary accepts.
func TestRequiredProperties(t *testing.T) {
	p := newTestPKI(t)
	full := map[string]map[string]any{"pcap-server": agentProperties(p), "pcap-server-api": apiProperties(p)}
	for job, props := range full {
		spec := jobSpec(t, job)
		for name, prop := range spec.Properties {
			if prop.HasDefault {
				continue
			}
			t.Run(job+"/"+name, func(t *testing.T) {
				r, err := renderJob(t, job, setDotted(props, name, nil))
				if slices.Contains(requiredProperties[job], name) {
					want := `Can't find property '["` + name + `"]'`
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("rendered without %s: %v", name, err)
					}
					return
				}
				if want, ok := enablingProperties[name]; ok {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("rendered without %s: %v; want an error saying %q", name, err, want)
					}
					return
				}
				if other, ok := pairedProperties[name]; ok {
					if err == nil || !strings.Contains(err.Error(), "go together") || !strings.Contains(err.Error(), other) {
						t.Fatalf("rendered %s without %s: %v", other, name, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("optional %s: %v", name, err)
				}
				out, err := checkConfig(t, binary(t, job), r.path(configFile(job)))
				if other, ok := conditionalProperties[name]; ok {
					if err == nil || !strings.Contains(out, name) || !strings.Contains(out, other) {
						t.Fatalf("without %s but with %s, -check-config: %v\n%s", name, other, err, out)
					}
					return
				}
				if err != nil {
					t.Fatalf("without %s: %v\n%s", name, err, out)
				}
			})
		}
		for _, name := range requiredProperties[job] {
			if spec.Properties[name].HasDefault {
				t.Errorf("%s: required property %s has a default", job, name)
			}
		}
	}
}

// TestBadValuesFailPreStart: a value the binary refuses renders, and the
// job's pre-start check (-check-config) names it.
func TestBadValuesFailPreStart(t *testing.T) {
	p := newTestPKI(t)
	tests := []struct {
		job, key string
		value    any
		want     string
	}{
		{"pcap-server-api", "authorization.mode", "everyone", `authorization.mode "everyone"`},
		{"pcap-server-api", "authorization.follow_ssh_policy", "sometimes", "cannot unmarshal !!str `sometimes` into bool"},
		{"pcap-server-api", "limits.default_duration", "2h", "limits.default_duration 2h0m0s must be positive and at most limits.max_duration"},
		{"pcap-server-api", "cloud_controller.url", "http://api.sys.example.com", "cloud_controller.url"},
		{"pcap-server", "limits.read_timeout", "5s", "limits.read_timeout 5s is outside 1ms..1s"},
		{"pcap-server", "garden.network", "udp", `garden.network "udp"`},
		{"pcap-server", "limits.gomaxprocs", 0, "limits.gomaxprocs 0 is outside 1..256"},
		{"pcap-server", "garden.container_owner_name", "", "garden.container_owner_name: empty"},
		{"pcap-server", "cell_ips", []any{"cell-1"}, `cell_ips: "cell-1" is not an IP address`},
	}
	full := map[string]map[string]any{"pcap-server": agentProperties(p), "pcap-server-api": apiProperties(p)}
	for _, tt := range tests {
		r := mustRenderJob(t, tt.job, setDotted(full[tt.job], tt.key, tt.value))
		out, err := checkConfig(t, binary(t, tt.job), r.path(configFile(tt.job)))
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("%s %s=%v: %v, output %q, want %q", tt.job, tt.key, tt.value, err, out, tt.want)
		}
	}
}

func TestAPIListenTLSNeedsBothHalves(t *testing.T) {
	p := newTestPKI(t)
	for _, half := range []string{"listen.tls.certificate", "listen.tls.private_key"} {
		_, err := renderJob(t, "pcap-server-api", setDotted(apiProperties(p), half, nil))
		if err == nil || !strings.Contains(err.Error(), "listen.tls.certificate and listen.tls.private_key go together") {
			t.Errorf("without %s: %v", half, err)
		}
	}
	// Empty strings, as a vars file carries them, mean unset: plain HTTP.
	r := mustRenderJob(t, "pcap-server-api", setDotted(apiProperties(p), "listen.tls", map[string]any{"certificate": "", "private_key": " "}))
	if _, ok := r.yaml(t, configFile("pcap-server-api"))["listen"].(map[string]any)["tls"]; ok {
		t.Error("empty listen.tls properties rendered listen.tls")
	}
	if !strings.Contains(string(r.read(t, "bin/route_health_check")), "'http://127.0.0.1:18443/readyz'") {
		t.Errorf("health check without TLS:\n%s", r.read(t, "bin/route_health_check"))
	}
}

func TestPromScraperConfig(t *testing.T) {
	p := newTestPKI(t)
	for _, tt := range []struct {
		job   string
		props map[string]any
		port  int
	}{
		{"pcap-server", agentProperties(p), 19496},
		{"pcap-server-api", apiProperties(p), 19495},
		{"pcap-server", minimalProperties(t, "pcap-server", agentProperties(p)), 9496},
		{"pcap-server-api", minimalProperties(t, "pcap-server-api", apiProperties(p)), 9495},
	} {
		r := mustRenderJob(t, tt.job, tt.props)
		got := r.yaml(t, "config/prom_scraper_config.yml")
		want := map[string]any{"port": tt.port, "source_id": tt.job, "instance_id": testInstance(tt.job).ID, "scheme": "http", "path": "/metrics"}
		if name, ok := lookupDotted(tt.props, "metrics.server_name"); ok {
			// With the metrics certificates: mutual TLS, verified by name.
			want["scheme"], want["server_name"] = "https", name
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s prom_scraper_config.yml = %v, want %v", tt.job, got, want)
		}
	}
	// Empty PEMs, as a vars file carries them, mean plain HTTP.
	r := mustRenderJob(t, "pcap-server", setDotted(agentProperties(p), "metrics", map[string]any{"address": "127.0.0.1:9", "ca_cert": "", "cert": " ", "key": ""}))
	if got := r.yaml(t, "config/prom_scraper_config.yml"); got["scheme"] != "http" || got["server_name"] != nil {
		t.Errorf("prom_scraper_config.yml with empty metrics PEMs: %v", got)
	}
	_, err := renderJob(t, "pcap-server", setDotted(agentProperties(p), "metrics.address", ""))
	if err == nil || !strings.Contains(err.Error(), "metrics.address") {
		t.Errorf("empty metrics.address: %v", err)
	}
}

// TestProcessFilesAgree checks the paths that monit, ctl, bpm and the
// packages must agree on.
func TestProcessFilesAgree(t *testing.T) {
	root := repoRoot(t)
	p := newTestPKI(t)
	read := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}

	agentMonit := read("jobs/pcap-server/monit")
	for _, want := range []string{
		"check process pcap-server\n",
		"with pidfile /var/vcap/sys/run/pcap-server/pid\n",
		`start program "/var/vcap/jobs/pcap-server/bin/ctl start"`,
		`stop program "/var/vcap/jobs/pcap-server/bin/ctl stop"`,
		"group vcap",
	} {
		if !strings.Contains(agentMonit, want) {
			t.Errorf("jobs/pcap-server/monit lacks %q", want)
		}
	}
	if jobSpec(t, "pcap-server").Templates["ctl.erb"] != "bin/ctl" {
		t.Error("the agent's ctl does not render to bin/ctl, where monit calls it")
	}

	apiMonit := read("jobs/pcap-server-api/monit")
	for _, want := range []string{
		"check process pcap-server-api\n",
		"with pidfile /var/vcap/sys/run/bpm/pcap-server-api/pcap-server-api.pid\n",
		`start program "/var/vcap/jobs/bpm/bin/bpm start pcap-server-api"`,
		`stop program "/var/vcap/jobs/bpm/bin/bpm stop pcap-server-api"`,
		"group vcap",
	} {
		if !strings.Contains(apiMonit, want) {
			t.Errorf("jobs/pcap-server-api/monit lacks %q", want)
		}
	}
	if s := read("jobs/pcap-server-dashboards/monit"); strings.TrimSpace(s) != "" {
		t.Errorf("the dashboards job runs no process, but its monit says %q", s)
	}

	r := mustRenderJob(t, "pcap-server-api", apiProperties(p))
	bpm := r.yaml(t, "config/bpm.yml")
	procs, _ := bpm["processes"].([]any)
	if len(procs) != 1 {
		t.Fatalf("bpm.yml processes: %v", bpm["processes"])
	}
	proc := procs[0].(map[string]any)
	if proc["name"] != "pcap-server-api" {
		t.Errorf("bpm process %v: monit's bpm start names pcap-server-api", proc["name"])
	}
	if want := filepath.Join(r.root, "packages/pcap-server-api/bin/pcap-server-api"); proc["executable"] != want {
		t.Errorf("bpm executable %v, want %s", proc["executable"], want)
	}
	if args := proc["args"]; !reflect.DeepEqual(args, []any{"-config", r.path(configFile("pcap-server-api"))}) {
		t.Errorf("bpm args %v", args)
	}

	for job, ctl := range map[string]string{"pcap-server": "bin/ctl", "pcap-server-api": "bin/drain"} {
		r := mustRenderJob(t, job, map[string]map[string]any{"pcap-server": agentProperties(p), "pcap-server-api": apiProperties(p)}[job])
		for _, script := range []string{ctl, "bin/pre-start"} {
			data := r.read(t, script)
			if !strings.HasPrefix(string(data), "#!/bin/bash\n") {
				t.Errorf("%s/%s starts with %q, not a shebang", job, script, firstLine(data))
			}
		}
		if want := filepath.Join(r.root, "packages", job, "bin", job); !strings.Contains(string(r.read(t, "bin/pre-start")), want+" \\\n  -config "+r.path(configFile(job))+" -check-config") {
			t.Errorf("%s pre-start does not check %s with %s:\n%s", job, configFile(job), want, r.read(t, "bin/pre-start"))
		}
	}
}

func TestDrainWaitsForDrainTimeout(t *testing.T) {
	p := newTestPKI(t)
	for timeout, wait := range map[string]string{"30s": "WAIT=45", "1m30s": "WAIT=105", "0s": "WAIT=15", "1500ms": "WAIT=17"} {
		r := mustRenderJob(t, "pcap-server-api", setDotted(apiProperties(p), "drain_timeout", timeout))
		if s := string(r.read(t, "bin/drain")); !strings.Contains(s, "\n"+wait+"\n") {
			t.Errorf("drain_timeout %s: want %s in\n%s", timeout, wait, s)
		}
	}
	_, err := renderJob(t, "pcap-server-api", setDotted(apiProperties(p), "drain_timeout", "soon"))
	if err == nil || !strings.Contains(err.Error(), `drain_timeout "soon" is not a Go duration`) {
		t.Errorf("drain_timeout soon: %v", err)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// deadline bounds how long a test waits for a process it started: a
// minute, or less when the test binary's own deadline comes sooner.
func deadline(t *testing.T) time.Duration {
	limit := time.Minute
	if d, ok := t.Deadline(); ok && time.Until(d)-5*time.Second < limit {
		limit = time.Until(d) - 5*time.Second
	}
	return limit
}

// notConfigKeys are the properties that set no key of the binaries'
// configuration: bin/drain's wait, prom_scraper's server name, the agent
// job's bosh-dns alias.
var notConfigKeys = map[string]bool{
	"route_unregister_wait": true,
	"metrics.server_name":   true,
	"dns_alias.domain":      true, "dns_alias.deployment": true, "dns_alias.instance_group": true, "dns_alias.network": true,
}
