package boshrelease

// The release's side of capturing BOSH VMs (ARCHITECTURE.md, "Operators:
// capturing BOSH VMs"): the runtime config that puts the agent with host
// capture on the VMs of the deployments an operator names, the cells' host
// capture by a property of the agent they already run, the API's bosh
// properties, and the API's listener for operators who reach it directly.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// The files the operator gives the bosh CLI for BOSH captures.
const (
	runtimeConfig      = "manifests/runtime-configs/pcap-server-agent.yml"
	cellHostCaptureOps = "manifests/ops-files/enable-cell-host-capture.yml"
	boshCaptureOps     = "manifests/ops-files/enable-bosh-capture.yml"
	// A deployment beside cf and pcap-server, as the director would have it.
	otherDeployment = "testdata/other-deployment.yml"
)

// rcVersion is the release version the tests give the runtime config.
const rcVersion = "1.2.3"

// runtimeConfigInt is bosh int of the runtime config with the variables
// the README has the operator give bosh update-runtime-config.
func runtimeConfigInt(t *testing.T, deploymentNames []string, extra ...string) map[string]any {
	t.Helper()
	args := []string{filepath.Join(repoRoot(t), runtimeConfig),
		"-v", "pcap_server_version=" + rcVersion,
		"-v", "pcap_server_agent_deployments=[" + strings.Join(deploymentNames, ", ") + "]"}
	return boshInt(t, append(args, extra...)...)
}

// TestRuntimeConfigVariables: what the operator gives the bosh CLI is
// exactly the two variables the README names, and what is left for the
// director is only the runtime config's own variables, which are
// absolute: the director adds a runtime config's variables to every
// deployment it deploys, so a relative one would become one credential per
// deployment on the director, named in the runtime config or not.
func TestRuntimeConfigVariables(t *testing.T) {
	raw := boshInt(t, filepath.Join(repoRoot(t), runtimeConfig))
	declared := map[string]bool{}
	for _, v := range asList(raw["variables"]) {
		name := fmt.Sprint(asMap(t, v, "variable")["name"])
		declared[name] = true
		if !strings.HasPrefix(name, "/") {
			t.Errorf("the runtime config declares %s: a relative name is generated in every deployment on the director", name)
		}
	}
	var operators []string
	for _, ref := range VariableRefs(raw) {
		if !declared[ref] {
			operators = append(operators, ref)
		}
	}
	if want := []string{"pcap_server_agent_deployments", "pcap_server_version"}; !slices.Equal(operators, want) {
		t.Errorf("the runtime config asks the operator for %v, want %v", operators, want)
	}

	rc := runtimeConfigInt(t, []string{"cf", "haproxy"})
	for _, ref := range VariableRefs(rc) {
		if !declared[ref] {
			t.Errorf("bosh int with the README's variables leaves ((%s)) for the director", ref)
		}
	}
	// The director refuses "latest" in a runtime config.
	release := named(t, rc["releases"], fmt.Sprint(loadManifest(t, "config/final.yml")["name"]), "release")
	if release["version"] != rcVersion {
		t.Errorf("runtime config release %v, want version %s", release, rcVersion)
	}
	addon, job := agentAddon(t, rc)
	if got, _ := lookupDotted(addon, "include.deployments"); !reflect.DeepEqual(got, []any{"cf", "haproxy"}) {
		t.Errorf("include.deployments = %v, want the deployments given", got)
	}
	if on, _ := lookupDotted(job["properties"], "host_capture.enabled"); on != true {
		t.Errorf("the runtime config's agent has host_capture.enabled %v, want true", on)
	}

	// The agents' client certificate comes from the tunnel CA the API
	// trusts, which both manifests declare alike (either may come first).
	ca := named(t, rc["variables"], "/pcap_tunnel_ca", "variable")
	for name, m := range map[string]map[string]any{"cf": cfWithPcap(t), "pcap-server": pcapInt(t)} {
		if other := named(t, m["variables"], "/pcap_tunnel_ca", "variable"); fmt.Sprint(normalize(other)) != fmt.Sprint(normalize(ca)) {
			t.Errorf("/pcap_tunnel_ca: runtime config %v, %s %v", ca, name, other)
		}
	}
	tlsProps, _ := lookupDotted(job["properties"], "api.tls")
	refs := VariableRefs(tlsProps)
	if len(refs) != 1 {
		t.Fatalf("the agent's api.tls refers to %v, want one certificate variable", refs)
	}
	opts := asMap(t, named(t, rc["variables"], refs[0], "variable")["options"], refs[0])
	if opts["ca"] != "/pcap_tunnel_ca" || !reflect.DeepEqual(opts["extended_key_usage"], []any{"client_auth"}) {
		t.Errorf("%s: %v, want a client_auth certificate signed by /pcap_tunnel_ca", refs[0], opts)
	}
	for key, field := range map[string]string{"certificate": "certificate", "private_key": "private_key", "ca": "ca"} {
		if got, _ := lookupDotted(tlsProps, key); got != "(("+refs[0]+"."+field+"))" {
			t.Errorf("api.tls.%s = %v, want ((%s.%s))", key, got, refs[0], field)
		}
	}
}

// placedAgent is one agent job the director would put on an instance
// group, and where it comes from.
type placedAgent struct {
	from  string
	props map[string]any
}

// agentsOn lists the agent jobs the director puts on an instance group of
// manifest with the runtime config rc: the instance group's own, the
// deployment's add-ons' and the runtime config's add-ons'.
func agentsOn(t *testing.T, manifest, rc, ig map[string]any) []placedAgent {
	t.Helper()
	var agents []placedAgent
	collect := func(from string, jobs any) {
		for _, j := range asList(jobs) {
			job := asMap(t, j, "job")
			if job["name"] == "pcap-server" && job["release"] == "pcap-server" {
				props, _ := job["properties"].(map[string]any)
				agents = append(agents, placedAgent{from: from, props: props})
			}
		}
	}
	collect("its jobs", ig["jobs"])
	for _, source := range []struct {
		what    string
		addons  any
		applies func(manifest, addon, ig map[string]any) (bool, error)
	}{
		{"the deployment's", manifest["addons"], AddonApplies},
		{"the runtime config's", rc["addons"], RuntimeAddonApplies},
	} {
		for _, a := range asList(source.addons) {
			addon := asMap(t, a, "add-on")
			if ok, err := source.applies(manifest, addon, ig); err != nil {
				t.Fatal(err)
			} else if ok {
				collect(fmt.Sprintf("%s add-on %v", source.what, addon["name"]), addon["jobs"])
			}
		}
	}
	return agents
}

// TestNoVMGetsTwoAgents plays the director's add-on placement (the rules of
// bosh's documentation, RuntimeAddonApplies) over cf-deployment with our
// ops files, pcap-server.yml and another deployment: every Linux service
// VM of the deployments the runtime config names runs exactly one agent,
// with host capture; the cells keep the one the cf deployment gives them
// (host capture by property); Windows VMs and errands get none; a
// deployment the runtime config does not name gets none from it.
func TestNoVMGetsTwoAgents(t *testing.T) {
	root := repoRoot(t)
	director := []map[string]any{
		cfInt(t, filepath.Join(root, opsFile), filepath.Join(root, cellHostCaptureOps)),
		pcapInt(t),
		boshInt(t, otherDeployment),
	}
	// Errands and Windows VMs.
	without := []string{"cf/rotate-cc-database-key", "cf/smoke-tests", "cf/windows2019-cell", "haproxy/acceptance-tests", "haproxy/windows-proxy"}
	check := func(t *testing.T, rc map[string]any, wantWithout []string) {
		var got []string
		for _, m := range director {
			for _, item := range asList(m["instance_groups"]) {
				ig := asMap(t, item, "instance group")
				vm := fmt.Sprintf("%v/%v", m["name"], ig["name"])
				agents := agentsOn(t, m, rc, ig)
				switch {
				case len(agents) == 0:
					got = append(got, vm)
				case len(agents) > 1:
					var from []string
					for _, a := range agents {
						from = append(from, a.from)
					}
					t.Errorf("%s gets %d agents, from %s", vm, len(agents), strings.Join(from, " and "))
				default:
					if on, _ := lookupDotted(agents[0].props, "host_capture.enabled"); on != true {
						t.Errorf("%s: the agent from %s has host_capture.enabled %v", vm, agents[0].from, on)
					}
				}
			}
		}
		sort.Strings(got)
		sort.Strings(wantWithout)
		if !slices.Equal(got, wantWithout) {
			t.Errorf("VMs without an agent: %v\nwant %v", got, wantWithout)
		}
	}
	t.Run("all named", func(t *testing.T) {
		check(t, runtimeConfigInt(t, []string{"cf", "pcap-server", "haproxy"}), without)
	})
	t.Run("cf not named", func(t *testing.T) {
		// The cells still run theirs, the cf deployment's; nothing else of cf does.
		want := slices.Clone(without)
		for _, item := range asList(director[0]["instance_groups"]) {
			ig := asMap(t, item, "instance group")
			if vm := "cf/" + fmt.Sprint(ig["name"]); !hasJob(ig, "rep", "diego") && !slices.Contains(want, vm) {
				want = append(want, vm)
			}
		}
		want = append(want, "pcap-server/pcap-server-api")
		check(t, runtimeConfigInt(t, []string{"haproxy"}), want)
	})
}

// hostAgentProperties is the runtime config's agent job properties after
// the director interpolated them for a VM of the cf deployment, with the
// credentials generated where d's came from (so the tunnel CA is shared).
func hostAgentProperties(t *testing.T, d deployments) map[string]any {
	t.Helper()
	rc := runtimeConfigInt(t, []string{"cf"})
	d.credhub.generate("cf", asList(rc["variables"]))
	rc = boshInt(t, writeYAML(t, "runtime-config.yml", rc), "-l", d.credhub.varsFile("cf"))
	_, job := agentAddon(t, rc)
	props, _ := job["properties"].(map[string]any)
	if refs := VariableRefs(props); len(refs) > 0 {
		t.Fatalf("the runtime config's agent properties still refer to %v", refs)
	}
	return props
}

// routerInstance is a gorouter VM of cf, where the runtime config puts an agent.
var routerInstance = Instance{ID: "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", IP: "10.0.17.9", Name: "router",
	Index: 1, Deployment: "cf", AZ: "z2", Address: "9b8a7c6d.router.default.cf.bosh"}

// TestRuntimeConfigAgentOnARouter renders the runtime config's agent for a
// router VM: host capture on, its BOSH identity and agent id from the
// instance, the alias of the API's VMs, and a client certificate with
// which it completes the tunnel's TLS handshake against the API rendered
// from pcap-server.yml.
func TestRuntimeConfigAgentOnARouter(t *testing.T) {
	d := interpolatedDeployments(t, nil)
	agent, err := renderJobOn(t, "pcap-server", hostAgentProperties(t, d), routerInstance)
	if err != nil {
		t.Fatal(err)
	}
	config := agent.yaml(t, configFile("pcap-server"))
	checkAgentIdentity(t, config, routerInstance, true)
	var aliases map[string][]string
	if err := json.Unmarshal(agent.read(t, "dns/aliases.json"), &aliases); err != nil {
		t.Fatal(err)
	}
	if want := wantAgentAlias(t, d.pcap); !reflect.DeepEqual(aliases, want) {
		t.Errorf("the router's dns/aliases.json = %v, want %v", aliases, want)
	}
	if out, err := checkConfig(t, binary(t, "pcap-server"), agent.path(configFile("pcap-server"))); err != nil {
		t.Fatalf("-check-config of the router's agent: %v\n%s", err, out)
	}
	api := mustRenderJob(t, "pcap-server-api", asMap(t, d.apiJob["properties"], "pcap-server-api properties"))
	if err := tunnelHandshake(t, agent, api); err != nil {
		t.Errorf("router agent to API tunnel handshake: %v", err)
	}
}

// TestCellHostCaptureByProperty: the cells get host capture from
// enable-cell-host-capture.yml, a property of the agent the cf add-on
// already gives them; without it they run the agent without. The ops file
// fails loudly where there is no such add-on.
func TestCellHostCaptureByProperty(t *testing.T) {
	root := repoRoot(t)
	cell := testInstance("pcap-server")
	for _, c := range []struct {
		ops  []string
		want bool
	}{
		{nil, false},
		{[]string{filepath.Join(root, cellHostCaptureOps)}, true},
	} {
		d := interpolatedDeployments(t, c.ops)
		agent, err := renderJobOn(t, "pcap-server", d.agentProps, cell)
		if err != nil {
			t.Fatal(err)
		}
		checkAgentIdentity(t, agent.yaml(t, configFile("pcap-server")), cell, c.want)
		if out, err := checkConfig(t, binary(t, "pcap-server"), agent.path(configFile("pcap-server"))); err != nil {
			t.Errorf("-check-config of the cell's agent (ops %v): %v\n%s", c.ops, err, out)
		}
	}
	_, err := boshIntOutput(t, filepath.Join(cfDeploymentDir(t), cfManifest), "-o", filepath.Join(root, cellHostCaptureOps))
	if err == nil || !strings.Contains(err.Error(), "name=pcap-server") {
		t.Errorf("bosh int of cf with enable-cell-host-capture.yml but without add-pcap-server.yml: %v; want an error naming the add-on", err)
	}
}

// TestAPIBoshProperties renders the API from pcap-server.yml with and
// without enable-bosh-capture.yml: with it, the config's bosh key holds
// the director's URL and the director's CA in a file (which the API also
// trusts for the director's UAA); without it there is no bosh key, so
// nothing BOSH is contacted.
func TestAPIBoshProperties(t *testing.T) {
	directorCA, err := testpki.NewCA("default_ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "director-ca.pem")
	if err := os.WriteFile(caFile, directorCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const url = "https://10.0.0.6:25555"

	t.Run("without", func(t *testing.T) {
		d := interpolatedDeployments(t, nil)
		api := mustRenderJob(t, "pcap-server-api", asMap(t, d.apiJob["properties"], "pcap-server-api properties"))
		if b, ok := api.yaml(t, configFile("pcap-server-api"))["bosh"]; ok {
			t.Errorf("pcap-server.yml alone renders bosh: %v", b)
		}
		if out, err := checkConfig(t, binary(t, "pcap-server-api"), api.path(configFile("pcap-server-api"))); err != nil {
			t.Errorf("-check-config: %v\n%s", err, out)
		}
	})
	t.Run("with", func(t *testing.T) {
		d := interpolatedDeployments(t, nil, "-o", filepath.Join(repoRoot(t), boshCaptureOps),
			"-v", "bosh_director_url="+url, "--var-file", "bosh_director_ca="+caFile)
		api := mustRenderJob(t, "pcap-server-api", asMap(t, d.apiJob["properties"], "pcap-server-api properties"))
		config := api.yaml(t, configFile("pcap-server-api"))
		want := map[string]any{"director_url": url, "ca": api.path("config/certs/bosh_ca.pem")}
		if got := config["bosh"]; !reflect.DeepEqual(got, want) {
			t.Fatalf("bosh = %v, want %v", got, want)
		}
		if got := strings.TrimSpace(string(api.read(t, "config/certs/bosh_ca.pem"))); got != strings.TrimSpace(string(directorCA.CertPEM)) {
			t.Errorf("config/certs/bosh_ca.pem does not hold the director's CA")
		}
		if out, err := checkConfig(t, binary(t, "pcap-server-api"), api.path(configFile("pcap-server-api"))); err != nil {
			t.Errorf("-check-config: %v\n%s", err, out)
		}
	})
}

// TestAPIReachableDirectly: with the gorouters broken, an operator reaches
// the API on its VM's listener with the trust of /pcap_api_ca, at
// localhost through an ssh tunnel (here: the API rendered from
// pcap-server.yml, on loopback) or by the VM's bosh-dns name.
func TestAPIReachableDirectly(t *testing.T) {
	d := interpolatedDeployments(t, nil)
	api, ctx := startRenderedAPI(t, d)
	_, port, _ := net.SplitHostPort(api.listen)
	roots := d.credhub.creds["/pcap_api_ca"].ca.Pool()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost:"+port+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz at localhost, trusting /pcap_api_ca: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s", resp.Status)
	}
	// The README's way for the CLI: Go on Linux takes its trust from
	// SSL_CERT_FILE. Trusted, the API's own refusal of the token comes
	// back; not trusted, the TLS handshake fails.
	caFile := filepath.Join(t.TempDir(), "pcap_api_ca.pem")
	if err := os.WriteFile(caFile, d.credhub.creds["/pcap_api_ca"].ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, trust := range []bool{true, false} {
		cmd := exec.CommandContext(ctx, binary(t, "pcap-server-cli"), "pcap", "app", "--api-url", "https://localhost:"+port,
			"--token", "not-a-token", "--app-guid", "d2c4e6f8-0000-4000-8000-000000000001", "-o", filepath.Join(t.TempDir(), "out.pcap"))
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
		if trust {
			cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+caFile)
		}
		out, err := cmd.CombinedOutput()
		refusedByAPI := strings.Contains(string(out), "401") && !strings.Contains(string(out), "certificate")
		if err == nil || refusedByAPI != trust {
			t.Errorf("pcap-server-cli against https://localhost:%s (SSL_CERT_FILE with /pcap_api_ca: %v): %v\n%s", port, trust, err, out)
		}
	}

	inst := testInstance("pcap-server-api")
	cert := resp.TLS.PeerCertificates[0]
	for _, name := range []string{
		inst.ID + ".pcap-server-api.default.pcap-server.bosh", // the VM's bosh-dns name
		"q-s0.pcap-server-api.default.pcap-server.bosh",       // every healthy VM of the group
		"pcap." + fmt.Sprint(d.vars["system_domain"]),         // the gorouter's
	} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("the API's certificate: %v", err)
		}
	}
}
