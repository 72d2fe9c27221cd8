package boshrelease

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// credhub generates certificate variables as the director does through
// CredHub: relative names live under /DIRECTOR/DEPLOYMENT/, absolute names
// are shared, and a name that exists is not generated again.
type credhub struct {
	t     *testing.T
	creds map[string]*credential
}

type credential struct {
	ca              *testpki.CA // for is_ca
	leaf            *testpki.Leaf
	signer          *testpki.CA
	commonName      string
	extKeyUsage     []string
	alternativeName []string
}

const director = "DIRECTOR" // as in vars-template.yml's CredHub references

func newCredhub(t *testing.T) *credhub {
	return &credhub{t: t, creds: map[string]*credential{}}
}

func (c *credhub) absolute(deployment, name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	return "/" + director + "/" + deployment + "/" + name
}

// generate creates the certificate variables of a manifest, in order.
func (c *credhub) generate(deployment string, variables []any) {
	c.t.Helper()
	for _, v := range variables {
		m := v.(map[string]any)
		name := c.absolute(deployment, fmt.Sprint(m["name"]))
		if _, ok := c.creds[name]; ok {
			continue
		}
		if m["type"] != "certificate" {
			c.t.Fatalf("variable %s: type %v is not simulated here", name, m["type"])
		}
		opts, _ := m["options"].(map[string]any)
		cred := &credential{commonName: fmt.Sprint(opts["common_name"])}
		for _, n := range asList(opts["alternative_names"]) {
			cred.alternativeName = append(cred.alternativeName, fmt.Sprint(n))
		}
		for _, u := range asList(opts["extended_key_usage"]) {
			cred.extKeyUsage = append(cred.extKeyUsage, fmt.Sprint(u))
		}
		var err error
		if opts["is_ca"] == true {
			cred.ca, err = testpki.NewCA(cred.commonName)
		} else {
			parent := c.creds[c.absolute(deployment, fmt.Sprint(opts["ca"]))]
			if parent == nil || parent.ca == nil {
				c.t.Fatalf("variable %s: its ca %v is not a generated CA", name, opts["ca"])
			}
			var usages []x509.ExtKeyUsage
			for _, u := range cred.extKeyUsage {
				switch u {
				case "server_auth":
					usages = append(usages, x509.ExtKeyUsageServerAuth)
				case "client_auth":
					usages = append(usages, x509.ExtKeyUsageClientAuth)
				default:
					c.t.Fatalf("variable %s: extended key usage %s is not simulated here", name, u)
				}
			}
			cred.signer = parent.ca
			cred.leaf, err = parent.ca.Issue(cred.commonName, cred.alternativeName, usages...)
		}
		if err != nil {
			c.t.Fatal(err)
		}
		c.creds[name] = cred
	}
}

// varsFile writes what the director would resolve from CredHub for a
// deployment as a vars file for bosh int: every credential under its
// absolute name, the deployment's own also under their relative names.
func (c *credhub) varsFile(deployment string) string {
	c.t.Helper()
	vars := map[string]any{}
	prefix := "/" + director + "/" + deployment + "/"
	for name, cred := range c.creds {
		fields := map[string]any{}
		if cred.ca != nil {
			fields["certificate"], fields["ca"] = string(cred.ca.CertPEM), string(cred.ca.CertPEM)
		} else {
			fields["certificate"], fields["private_key"], fields["ca"] = string(cred.leaf.CertPEM), string(cred.leaf.KeyPEM), string(cred.signer.CertPEM)
		}
		vars[name] = fields
		if rel, ok := strings.CutPrefix(name, prefix); ok {
			vars[rel] = fields
		}
	}
	return writeYAML(c.t, deployment+"-credhub.yml", vars)
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asMap(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not a map: %v", what, v)
	}
	return m
}

func named(t *testing.T, list any, name, what string) map[string]any {
	t.Helper()
	for _, item := range asList(list) {
		if m, ok := item.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no %s named %s", what, name)
	return nil
}

func loadManifest(t *testing.T, rel string) map[string]any {
	t.Helper()
	doc, err := LoadYAML(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return asMap(t, doc, rel)
}

// The files the tests give bosh int.
const (
	opsFile      = "manifests/ops-files/add-pcap-server.yml"
	locationOps  = "manifests/ops-files/set-pcap-server-api-location.yml"
	pcapManifest = "manifests/pcap-server.yml"
	varsTemplate = "manifests/vars-template.yml"
)

// cfInt is bosh int of cf-deployment's manifest with the cells of
// testdata/more-cells.yml and the ops files given, in order, with the
// variables that rename-network-and-deployment.yml asks for.
func cfInt(t *testing.T, ops ...string) map[string]any {
	t.Helper()
	args := []string{filepath.Join(cfDeploymentDir(t), cfManifest), "-o", "testdata/more-cells.yml"}
	for _, o := range ops {
		args = append(args, "-o", o)
	}
	return boshInt(t, append(args, "-v", "deployment_name=cf", "-v", "network_name=cf-network")...)
}

// cfWithPcap is the cf manifest with our ops file, as bosh int makes it.
func cfWithPcap(t *testing.T) map[string]any {
	t.Helper()
	return cfInt(t, filepath.Join(repoRoot(t), opsFile))
}

// pcapInt is bosh int of pcap-server.yml with vars-template.yml.
func pcapInt(t *testing.T, extra ...string) map[string]any {
	t.Helper()
	root := repoRoot(t)
	return boshInt(t, append([]string{filepath.Join(root, pcapManifest), "-l", filepath.Join(root, varsTemplate)}, extra...)...)
}

// apiInstanceGroup is the instance group of pcap-server.yml that runs the API.
func apiInstanceGroup(t *testing.T, pcap map[string]any) map[string]any {
	t.Helper()
	for _, item := range asList(pcap["instance_groups"]) {
		if ig := asMap(t, item, "instance group"); hasJob(ig, "pcap-server-api", "pcap-server") {
			return ig
		}
	}
	t.Fatal("pcap-server.yml has no instance group with pcap-server-api")
	return nil
}

// agentAddon is the cf manifest's add-on that carries our agent job.
func agentAddon(t *testing.T, cf map[string]any) (addon, job map[string]any) {
	t.Helper()
	addon = named(t, cf["addons"], "pcap-server", "add-on")
	jobs := asList(addon["jobs"])
	if len(jobs) != 1 {
		t.Fatalf("add-on pcap-server has jobs %v, want the agent alone", jobs)
	}
	job = asMap(t, jobs[0], "job")
	if job["name"] != "pcap-server" || job["release"] != "pcap-server" {
		t.Fatalf("add-on job %v/%v, want pcap-server of release pcap-server", job["name"], job["release"])
	}
	return addon, job
}

// agentAliases renders the agent job with the add-on's properties and
// returns its dns/aliases.json, what bosh-dns on a cell reads.
func agentAliases(t *testing.T, job map[string]any) map[string][]string {
	t.Helper()
	props, _ := job["properties"].(map[string]any)
	r := mustRenderJob(t, "pcap-server", props)
	var aliases map[string][]string
	if err := json.Unmarshal(r.read(t, "dns/aliases.json"), &aliases); err != nil {
		t.Fatalf("dns/aliases.json: %v", err)
	}
	return aliases
}

// wantAgentAlias is the alias the cells need: the host the agents dial,
// to every VM of the API's instance group in pcap-server.yml as deployed
// with vars.
func wantAgentAlias(t *testing.T, pcap map[string]any) map[string][]string {
	t.Helper()
	ig := apiInstanceGroup(t, pcap)
	network := asMap(t, asList(ig["networks"])[0], "network")["name"]
	var want = map[string][]string{}
	for _, addr := range asList(jobSpec(t, "pcap-server").Properties["api.addresses"].Default) {
		host, _, err := net.SplitHostPort(fmt.Sprint(addr))
		if err != nil {
			t.Fatal(err)
		}
		want[host] = []string{fmt.Sprintf("*.%s.%s.%s.bosh", ig["name"], network, pcap["name"])}
	}
	return want
}

// checkPcapAdditions asserts what the ops file must leave in a cf
// manifest, whatever other ops files did: the agent on every instance
// group that runs diego's rep and nowhere else, with prom_scraper beside
// it to scrape its metrics over mutual TLS; the cells' alias of the API's
// VMs; the API's CA in the gorouter's trust.
func checkPcapAdditions(t *testing.T, cf, pcap map[string]any) {
	t.Helper()
	addon, job := agentAddon(t, cf)
	scraper := named(t, cf["addons"], "prom_scraper", "add-on")
	var placed, withRep []string
	for _, item := range asList(cf["instance_groups"]) {
		ig := asMap(t, item, "instance group")
		ok, err := AddonApplies(cf, addon, ig)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			placed = append(placed, fmt.Sprint(ig["name"]))
			if scraped, err := AddonApplies(cf, scraper, ig); err != nil || !scraped {
				t.Errorf("%s runs the agent but not prom_scraper (%v)", ig["name"], err)
			}
		}
		if hasJob(ig, "rep", "diego") {
			withRep = append(withRep, fmt.Sprint(ig["name"]))
		}
	}
	if !slices.Equal(placed, withRep) || !slices.Contains(placed, "diego-cell") || !slices.Contains(placed, "isolated-diego-cell") {
		t.Errorf("agent placed on %v; diego's rep runs on %v; want both, with diego-cell and isolated-diego-cell", placed, withRep)
	}
	named(t, cf["releases"], "pcap-server", "release")

	if got, want := agentAliases(t, job), wantAgentAlias(t, pcap); !reflect.DeepEqual(got, want) {
		t.Errorf("the cells' dns/aliases.json = %v, want %v", got, want)
	}

	gorouter := named(t, named(t, cf["instance_groups"], "router", "instance group")["jobs"], "gorouter", "job")
	caCerts, _ := lookupDotted(gorouter["properties"], "router.ca_certs")
	if !slices.Contains(asList(caCerts), any("((/pcap_api_ca.ca))")) || len(asList(caCerts)) < 2 {
		t.Errorf("router.ca_certs %v: want cf-deployment's CAs and ((/pcap_api_ca.ca))", caCerts)
	}

	// The agent's metrics certificate and prom_scraper's client certificate
	// come from the same CA, and prom_scraper verifies the server name the
	// certificate carries.
	metrics, _ := lookupDotted(job["properties"], "metrics")
	m := asMap(t, metrics, "agent metrics properties")
	certVar, _, _ := strings.Cut(strings.Trim(fmt.Sprint(m["cert"]), "()"), ".")
	for key, field := range map[string]string{"ca_cert": "ca", "cert": "certificate", "key": "private_key"} {
		if want := "((" + certVar + "." + field + "))"; m[key] != want {
			t.Errorf("agent metrics.%s = %v, want %s", key, m[key], want)
		}
	}
	serverCert := asMap(t, named(t, cf["variables"], certVar, "variable")["options"], certVar)
	scrape, _ := lookupDotted(asMap(t, asList(scraper["jobs"])[0], "prom_scraper job")["properties"], "scrape.tls.cert")
	clientVar, _, _ := strings.Cut(strings.Trim(fmt.Sprint(scrape), "()"), ".")
	clientCert := asMap(t, named(t, cf["variables"], clientVar, "variable")["options"], clientVar)
	if serverCert["ca"] != clientCert["ca"] || serverCert["ca"] == nil {
		t.Errorf("the agent's metrics certificate is signed by %v, prom_scraper's client certificate by %v", serverCert["ca"], clientCert["ca"])
	}
	if !slices.Contains(asList(serverCert["alternative_names"]), m["server_name"]) || !slices.Contains(asList(serverCert["extended_key_usage"]), any("server_auth")) {
		t.Errorf("%s: %v lacks server_auth or metrics.server_name %v", certVar, serverCert, m["server_name"])
	}
}

// TestOpsFileWithCfDeploymentOpsFiles applies the ops file to cf-deployment's
// manifest with the real bosh CLI, alone and before and after each of
// cf-deployment's ops files at hand: what it adds must survive any order.
func TestOpsFileWithCfDeploymentOpsFiles(t *testing.T) {
	dir := cfDeploymentDir(t)
	ours := filepath.Join(repoRoot(t), opsFile)
	pcap := pcapInt(t)
	entries, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, e := range entries {
		if filepath.Base(e) != cfManifest {
			others = append(others, e)
		}
	}
	if len(others) == 0 {
		t.Fatalf("no cf-deployment ops files in %s", dir)
	}
	t.Run("alone", func(t *testing.T) { checkPcapAdditions(t, cfInt(t, ours), pcap) })
	for _, other := range others {
		name := strings.TrimSuffix(filepath.Base(other), ".yml")
		t.Run(name+"/after-ours", func(t *testing.T) { checkPcapAdditions(t, cfInt(t, ours, other), pcap) })
		t.Run(name+"/before-ours", func(t *testing.T) { checkPcapAdditions(t, cfInt(t, other, ours), pcap) })
	}
}

// TestOpsFileFailsLoudly: a cf manifest the ops file cannot add to is an
// error of bosh int, not a manifest without the addition.
func TestOpsFileFailsLoudly(t *testing.T) {
	noRouter := writeYAML(t, "remove-router.yml", []any{map[string]any{"type": "remove", "path": "/instance_groups/name=router"}})
	_, err := boshIntOutput(t, filepath.Join(cfDeploymentDir(t), cfManifest), "-o", noRouter, "-o", filepath.Join(repoRoot(t), opsFile))
	if err == nil || !strings.Contains(err.Error(), "name=router") {
		t.Errorf("bosh int without a router instance group: %v; want an error naming it", err)
	}
}

// TestAPILocationOpsFile: with another deployment name and network for the
// API, pcap-server.yml (deployed with them) and the agents' alias (the
// cells' and the runtime config's, with the location ops file and the same
// values) agree.
func TestAPILocationOpsFile(t *testing.T) {
	root := repoRoot(t)
	vars := []string{"-v", "pcap_server_deployment_name=capture", "-v", "pcap_server_network_name=services"}
	pcap := pcapInt(t, vars...)
	if pcap["name"] != "capture" {
		t.Fatalf("pcap-server.yml deployed as %v with pcap_server_deployment_name=capture", pcap["name"])
	}
	cf := boshInt(t, append([]string{filepath.Join(cfDeploymentDir(t), cfManifest),
		"-o", filepath.Join(root, opsFile), "-o", filepath.Join(root, locationOps)}, vars...)...)
	_, job := agentAddon(t, cf)
	if got, want := agentAliases(t, job), wantAgentAlias(t, pcap); !reflect.DeepEqual(got, want) || !strings.Contains(fmt.Sprint(got), ".services.capture.bosh") {
		t.Errorf("the cells' dns/aliases.json = %v, want %v", got, want)
	}
	// The same ops file, the same values, for the runtime config's agents.
	rc := runtimeConfigInt(t, []string{"cf"}, append([]string{"-o", filepath.Join(root, locationOps)}, vars...)...)
	_, job = agentAddon(t, rc)
	if got, want := agentAliases(t, job), wantAgentAlias(t, pcap); !reflect.DeepEqual(got, want) {
		t.Errorf("the runtime config's dns/aliases.json = %v, want %v", got, want)
	}
	// Operators who reach the API directly find its VMs under their new names.
	listen := asMap(t, named(t, pcap["variables"], "pcap_api_listen_tls", "variable")["options"], "pcap_api_listen_tls")
	if want := "*.pcap-server-api.services.capture.bosh"; !slices.Contains(asList(listen["alternative_names"]), any(want)) {
		t.Errorf("pcap_api_listen_tls names %v, want %s among them", listen["alternative_names"], want)
	}
}

// TestPcapManifestVariables: bosh int of pcap-server.yml with
// vars-template.yml resolves every variable but those CredHub has: the
// ones the manifest declares (generated) and the cf deployment's that the
// vars file refers to by CredHub path.
func TestPcapManifestVariables(t *testing.T) {
	raw := loadManifest(t, pcapManifest)
	vars := loadManifest(t, varsTemplate)
	pcap := pcapInt(t)
	declared := map[string]bool{}
	for _, v := range asList(pcap["variables"]) {
		declared[fmt.Sprint(asMap(t, v, "variable")["name"])] = true
	}
	fromVars := map[string]bool{}
	for _, ref := range VariableRefs(vars) {
		fromVars[ref] = true
		if !strings.HasPrefix(ref, "/"+director+"/cf/") {
			t.Errorf("vars-template.yml refers to ((%s)): only the cf deployment's CredHub entries belong there", ref)
		}
	}
	for _, ref := range VariableRefs(pcap) {
		if !declared[ref] && !fromVars[ref] {
			t.Errorf("bosh int of pcap-server.yml with vars-template.yml leaves ((%s)), which CredHub does not have", ref)
		}
	}
	used := map[string]bool{}
	for _, ref := range VariableRefs(raw) {
		used[ref] = true
	}
	for k := range vars {
		if !used[k] {
			t.Errorf("vars-template.yml sets %s, which pcap-server.yml does not use", k)
		}
	}
	// The stemcell the releases it shares with cf-deployment come compiled for.
	cf := boshInt(t, filepath.Join(cfDeploymentDir(t), cfManifest))
	want := asMap(t, asList(cf["stemcells"])[0], "cf stemcell")["os"]
	if got := asMap(t, asList(pcap["stemcells"])[0], "stemcell")["os"]; got != want || got != "ubuntu-noble" {
		t.Errorf("pcap-server.yml deploys on %v; cf-deployment on %v", got, want)
	}
}

func TestManifestsDeclareWhatTheyReferTo(t *testing.T) {
	cf := cfWithPcap(t)
	pcap := pcapInt(t)
	ops := yamlFile(t, opsFile)

	declared := func(m map[string]any) map[string]bool {
		d := map[string]bool{}
		for _, v := range asList(m["variables"]) {
			d[fmt.Sprint(asMap(t, v, "variable")["name"])] = true
		}
		return d
	}
	for _, ref := range VariableRefs(ops) {
		if !declared(cf)[ref] {
			t.Errorf("the ops file refers to ((%s)), which the cf manifest does not declare", ref)
		}
	}
	// Every CA our certificates name is one the manifest declares.
	for _, m := range []map[string]any{cf, pcap} {
		for _, v := range asList(m["variables"]) {
			opts, _ := asMap(t, v, "variable")["options"].(map[string]any)
			if ca, ok := opts["ca"]; ok && !declared(m)[fmt.Sprint(ca)] {
				t.Errorf("variable %v is signed by %v, which is not declared", asMap(t, v, "variable")["name"], ca)
			}
		}
	}

	// The shared CAs are declared alike in both manifests, so either
	// deployment may come first.
	for _, ca := range []string{"/pcap_tunnel_ca", "/pcap_api_ca"} {
		a := named(t, cf["variables"], ca, "variable")
		b := named(t, pcap["variables"], ca, "variable")
		if fmt.Sprint(normalize(a)) != fmt.Sprint(normalize(b)) {
			t.Errorf("%s differs: cf %v, pcap-server %v", ca, a, b)
		}
		if asMap(t, a["options"], ca)["is_ca"] != true {
			t.Errorf("%s is not a CA", ca)
		}
	}
	checkLeaf := func(m map[string]any, name, ca, usage string) map[string]any {
		opts := asMap(t, named(t, m["variables"], name, "variable")["options"], name)
		if opts["ca"] != ca {
			t.Errorf("%s is signed by %v, want %s", name, opts["ca"], ca)
		}
		if eku := asList(opts["extended_key_usage"]); len(eku) != 1 || eku[0] != usage {
			t.Errorf("%s extended_key_usage %v, want [%s]", name, eku, usage)
		}
		return opts
	}
	checkLeaf(cf, "pcap_agent_tls", "/pcap_tunnel_ca", "client_auth")
	checkLeaf(cf, "pcap_server_metrics_tls", "metric_scraper_ca", "server_auth")
	tunnel := checkLeaf(pcap, "pcap_api_tunnel_tls", "/pcap_tunnel_ca", "server_auth")
	listen := checkLeaf(pcap, "pcap_api_listen_tls", "/pcap_api_ca", "server_auth")

	// The gorouter trusts the CA of the API's HTTPS certificate, through its
	// .ca, which holds both versions during a rotation.
	gorouter := named(t, named(t, cf["instance_groups"], "router", "instance group")["jobs"], "gorouter", "job")
	caCerts, _ := lookupDotted(gorouter["properties"], "router.ca_certs")
	if want := "((" + fmt.Sprint(listen["ca"]) + ".ca))"; !slices.Contains(asList(caCerts), any(want)) {
		t.Errorf("router.ca_certs %v lacks %s", caCerts, want)
	}

	// The agents dial a name the tunnel certificate carries, on the API's
	// tunnel port, which the cells and the API's VMs resolve to the API's
	// instance group.
	agentSpec := jobSpec(t, "pcap-server")
	serverName := agentSpec.Properties["api.tls.server_name"].Default
	if !slices.Contains(asList(tunnel["alternative_names"]), serverName) {
		t.Errorf("the tunnel certificate names %v, not the agents' api.tls.server_name %v", tunnel["alternative_names"], serverName)
	}
	_, tunnelPort, err := net.SplitHostPort(fmt.Sprint(jobSpec(t, "pcap-server-api").Properties["tunnel.address"].Default))
	if err != nil {
		t.Fatal(err)
	}
	want := wantAgentAlias(t, pcap)
	for _, addr := range asList(agentSpec.Properties["api.addresses"].Default) {
		host, port, err := net.SplitHostPort(fmt.Sprint(addr))
		if err != nil {
			t.Fatal(err)
		}
		if port != tunnelPort {
			t.Errorf("agents dial %s, the API's tunnel listens on port %s", addr, tunnelPort)
		}
		target := aliasTarget(t, pcap, host)
		if got := fmt.Sprintf("%v.%v.%v.%v.%v", target["query"], target["instance_group"], target["network"], target["deployment"], target["domain"]); !slices.Equal([]string{got}, want[host]) {
			t.Errorf("pcap-server.yml: alias %s targets %s, the cells' %v", host, got, want[host])
		}
	}
}

// yamlFile decodes a file of the repository.
func yamlFile(t *testing.T, rel string) any {
	t.Helper()
	doc, err := LoadYAML(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// aliasTarget finds the one target of a bosh-dns alias in a manifest's
// bosh-dns-aliases job, as an add-on or in an instance group.
func aliasTarget(t *testing.T, m map[string]any, domain string) map[string]any {
	t.Helper()
	var jobs []any
	for _, a := range asList(m["addons"]) {
		jobs = append(jobs, asList(asMap(t, a, "add-on")["jobs"])...)
	}
	for _, ig := range asList(m["instance_groups"]) {
		jobs = append(jobs, asList(asMap(t, ig, "instance group")["jobs"])...)
	}
	for _, j := range jobs {
		job := asMap(t, j, "job")
		if job["name"] != "bosh-dns-aliases" {
			continue
		}
		props, _ := job["properties"].(map[string]any)
		for _, a := range asList(props["aliases"]) {
			alias := asMap(t, a, "alias")
			if alias["domain"] == domain {
				targets := asList(alias["targets"])
				if len(targets) != 1 {
					t.Fatalf("alias %s has targets %v", domain, targets)
				}
				return asMap(t, targets[0], "target")
			}
		}
	}
	t.Fatalf("no bosh-dns alias for %s", domain)
	return nil
}

// deployments is both manifests after the bosh CLI and the director
// interpolated them (vars file, then CredHub), with the jobs of ours.
type deployments struct {
	cf, pcap, vars              map[string]any
	agentProps                  map[string]any // the add-on's pcap-server job
	apiIG, apiJob, registrarJob map[string]any
	credhub                     *credhub // what the director generated for them
}

// interpolatedDeployments deploys cf with our ops file and then cfOps,
// and pcap-server.yml with pcapArgs (ops files and variables for bosh int).
func interpolatedDeployments(t *testing.T, cfOps []string, pcapArgs ...string) deployments {
	t.Helper()
	ops := append([]string{filepath.Join(repoRoot(t), opsFile)}, cfOps...)
	d := deployments{cf: cfInt(t, ops...), pcap: pcapInt(t, pcapArgs...), vars: loadManifest(t, varsTemplate)}
	ch := newCredhub(t)
	d.credhub = ch
	// What the cf deployment has in CredHub already, which vars-template.yml refers to.
	ch.generate("cf", []any{
		map[string]any{"name": "nats_ca", "type": "certificate", "options": map[string]any{"is_ca": true, "common_name": "nats"}},
		map[string]any{"name": "nats_client_cert", "type": "certificate", "options": map[string]any{"ca": "nats_ca", "common_name": "nats_client", "extended_key_usage": []any{"client_auth"}}},
		map[string]any{"name": "router_ca", "type": "certificate", "options": map[string]any{"is_ca": true, "common_name": "routerCA"}},
	})
	// Of cf-deployment's own variables only those ours are signed by.
	mine := map[string]bool{"metric_scraper_ca": true, "prom_scraper_scrape_tls": true}
	for _, op := range asList(yamlFile(t, opsFile)) {
		if o := asMap(t, op, "op"); o["path"] == "/variables/-" {
			mine[fmt.Sprint(asMap(t, o["value"], "variable")["name"])] = true
		}
	}
	var cfVars []any
	for _, v := range asList(d.cf["variables"]) {
		if mine[fmt.Sprint(asMap(t, v, "variable")["name"])] {
			cfVars = append(cfVars, v)
		}
	}
	ch.generate("cf", cfVars)
	ch.generate("pcap-server", asList(d.pcap["variables"]))
	// The director resolves the rest from CredHub; bosh int with the
	// credentials as a vars file does the same here.
	d.pcap = boshInt(t, writeYAML(t, "pcap-server.yml", d.pcap), "-l", ch.varsFile("pcap-server"))
	d.cf = boshInt(t, writeYAML(t, "cf.yml", d.cf), "-l", ch.varsFile("cf"))
	if refs := VariableRefs(d.pcap); len(refs) > 0 {
		t.Fatalf("pcap-server.yml still refers to %v after interpolation", refs)
	}

	_, agentJob := agentAddon(t, d.cf)
	d.agentProps, _ = agentJob["properties"].(map[string]any)
	if refs := VariableRefs(d.agentProps); len(refs) > 0 {
		t.Fatalf("the agent's properties still refer to %v after interpolation", refs)
	}
	d.apiIG = apiInstanceGroup(t, d.pcap)
	for _, j := range asList(d.apiIG["jobs"]) {
		switch job := asMap(t, j, "job"); job["name"] {
		case "pcap-server-api":
			d.apiJob = job
		case "route_registrar":
			d.registrarJob = job
		}
	}
	if d.apiJob == nil || d.registrarJob == nil {
		t.Fatal("pcap-server.yml lacks the pcap-server-api or route_registrar job")
	}
	return d
}

// TestDeploymentsConnect plays both deployments through: certificates
// generated from the manifests' variables (the shared CAs once), the
// agent add-on and the API instance group rendered from their manifest
// properties and accepted by the binaries, and a TLS handshake between
// the rendered agent and API files, with the code the binaries use. Then
// the gorouter's view: the API's HTTPS certificate verifies against the
// CA the ops file adds to router.ca_certs, for the route's
// server_cert_domain_san.
func TestDeploymentsConnect(t *testing.T) {
	d := interpolatedDeployments(t, nil)
	cf, pcap, vars, apiIG, apiJob, registrar := d.cf, d.pcap, d.vars, d.apiIG, d.apiJob, d.registrarJob
	if !hasJob(apiIG, "bpm", "bpm") || !hasJob(apiIG, "route_registrar", "routing") || !hasJob(apiIG, "bosh-dns-aliases", "bosh-dns-aliases") {
		t.Errorf("the API instance group lacks bpm, route_registrar or bosh-dns-aliases: %v", apiIG["jobs"])
	}
	agent := mustRenderJob(t, "pcap-server", d.agentProps)
	api := mustRenderJob(t, "pcap-server-api", asMap(t, apiJob["properties"], "pcap-server-api properties"))

	for _, c := range []struct{ job, bin string }{{"pcap-server", "pcap-server"}, {"pcap-server-api", "pcap-server-api"}} {
		r := map[string]renderedJob{"pcap-server": agent, "pcap-server-api": api}[c.job]
		if out, err := checkConfig(t, binary(t, c.bin), r.path(configFile(c.job))); err != nil {
			t.Fatalf("%s rendered from the manifests: %v\n%s", c.job, err, out)
		}
	}

	if err := tunnelHandshake(t, agent, api); err != nil {
		t.Errorf("agent to API tunnel handshake with the manifests' certificates: %v", err)
	}
	agentCfg := agent.yaml(t, configFile("pcap-server"))
	apiCfg := api.yaml(t, configFile("pcap-server-api"))
	at := func(doc map[string]any, key string) string { return configValue(t, doc, key) }

	// prom_scraper on a cell, with its client certificate from the cf
	// manifest, scrapes the agent's metrics as prom_scraper_config.yml says.
	scrapeCfg := agent.yaml(t, "config/prom_scraper_config.yml")
	if scrapeCfg["scheme"] != "https" {
		t.Errorf("prom_scraper_config.yml %v: want scheme https", scrapeCfg)
	}
	metricsTLS, err := tlsconfig.MutualServer(at(agentCfg, "metrics.cert"), at(agentCfg, "metrics.key"), at(agentCfg, "metrics.ca_cert"))
	if err != nil {
		t.Fatal(err)
	}
	scraper := named(t, cf["addons"], "prom_scraper", "add-on")
	scrapeTLS, _ := lookupDotted(asMap(t, asList(scraper["jobs"])[0], "prom_scraper job")["properties"], "scrape.tls")
	st := asMap(t, scrapeTLS, "prom_scraper scrape.tls")
	scraperCert, err := tls.X509KeyPair([]byte(fmt.Sprint(st["cert"])), []byte(fmt.Sprint(st["key"])))
	if err != nil {
		t.Fatalf("prom_scraper's client certificate: %v", err)
	}
	scraperCAs := x509.NewCertPool()
	scraperCAs.AppendCertsFromPEM([]byte(fmt.Sprint(st["ca_cert"])))
	scraperTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{scraperCert}, RootCAs: scraperCAs, ServerName: fmt.Sprint(scrapeCfg["server_name"])}
	if err := handshake(t, metricsTLS, scraperTLS); err != nil {
		t.Errorf("prom_scraper to the agent's metrics with the manifests' certificates: %v", err)
	}

	// The gorouter's view of the API's HTTPS listener.
	props := asMap(t, registrar["properties"], "route_registrar properties")
	routes := asList(asMap(t, props["route_registrar"], "route_registrar")["routes"])
	if len(routes) != 1 {
		t.Fatalf("routes: %v", routes)
	}
	route := asMap(t, routes[0], "route")
	_, port, _ := net.SplitHostPort(at(apiCfg, "listen.address"))
	if fmt.Sprint(route["tls_port"]) != port || route["port"] != nil {
		t.Errorf("route tls_port %v, port %v; the API listens with TLS on %s", route["tls_port"], route["port"], port)
	}
	if want := "pcap." + fmt.Sprint(vars["system_domain"]); !slices.Equal(asList(route["uris"]), []any{want}) {
		t.Errorf("route uris %v, want [%s]", route["uris"], want)
	}
	hc := asMap(t, route["health_check"], "health_check")
	if want := "/var/vcap/jobs/pcap-server-api/" + jobSpec(t, "pcap-server-api").Templates["route_health_check.erb"]; hc["script_path"] != want {
		t.Errorf("health check %v, want %s", hc["script_path"], want)
	}
	routerCAs := x509.NewCertPool()
	router := named(t, cf["instance_groups"], "router", "instance group")
	gorouter := named(t, router["jobs"], "gorouter", "job")
	caCerts, _ := lookupDotted(gorouter["properties"], "router.ca_certs")
	for _, ca := range asList(caCerts) {
		routerCAs.AppendCertsFromPEM([]byte(fmt.Sprint(ca)))
	}
	block, _ := pem.Decode([]byte(api.read(t, "config/certs/listen_tls_certificate.pem")))
	if block == nil {
		t.Fatal("no PEM in the API's listen certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		DNSName:   fmt.Sprint(route["server_cert_domain_san"]),
		Roots:     routerCAs,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Errorf("the gorouter would refuse the API's certificate: %v", err)
	}

	// route_registrar reaches cf's NATS over TLS.
	consumes := asMap(t, registrar["consumes"], "route_registrar consumes")
	if link := asMap(t, consumes["nats-tls"], "nats-tls"); link["from"] != "nats-tls" || link["deployment"] != cf["name"] {
		t.Errorf("route_registrar consumes nats-tls %v, want from nats-tls in deployment %v", link, cf["name"])
	}
	if tlsOn, _ := lookupDotted(props, "nats.tls.enabled"); tlsOn != true {
		t.Error("route_registrar does not use TLS to NATS")
	}
	// The NATS hostname comes with the nats-tls link (nats.service.cf.internal
	// in cf-deployment); on the API's VMs the alias must resolve it.
	if _, set := lookupDotted(props, "nats.tls.hostname"); set {
		t.Error("nats.tls.hostname is not a route_registrar property (the link gives the hostname)")
	}
	if target := aliasTarget(t, pcap, "nats.service.cf.internal"); target["instance_group"] != "nats" || target["deployment"] != cf["name"] {
		t.Errorf("nats.service.cf.internal resolves to %v, want cf's nats", target)
	}
}

// tunnelHandshake runs the tunnel's TLS handshake between a rendered agent
// and a rendered API, with their certificate files, as the daemons set it up.
func tunnelHandshake(t *testing.T, agent, api renderedJob) error {
	t.Helper()
	agentCfg := agent.yaml(t, configFile("pcap-server"))
	apiCfg := api.yaml(t, configFile("pcap-server-api"))
	serverTLS, err := tlsconfig.MutualServer(configValue(t, apiCfg, "tunnel.tls.certificate"),
		configValue(t, apiCfg, "tunnel.tls.private_key"), configValue(t, apiCfg, "tunnel.tls.client_ca"))
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := tlsconfig.MutualClient(configValue(t, agentCfg, "api.tls.certificate"), configValue(t, agentCfg, "api.tls.private_key"),
		configValue(t, agentCfg, "api.tls.ca"), configValue(t, agentCfg, "api.tls.server_name"))
	if err != nil {
		t.Fatal(err)
	}
	return handshake(t, serverTLS, clientTLS)
}

// configValue is a rendered configuration's value at a dotted key.
func configValue(t *testing.T, doc map[string]any, key string) string {
	t.Helper()
	v, ok := lookupDotted(doc, key)
	if !ok {
		t.Fatalf("rendered config lacks %s", key)
	}
	return fmt.Sprint(v)
}

// handshake runs a TLS handshake between the two configurations over a
// loopback TCP connection (whose buffers let the server's alert go out
// while the client, done with its part under TLS 1.3, no longer reads).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline(t))
	defer cancel()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		srvErr <- tls.Server(conn, server).HandshakeContext(ctx)
	}()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := tls.Client(conn, client).HandshakeContext(ctx); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := <-srvErr; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func TestReleaseNameIsTheOneManifestsUse(t *testing.T) {
	final := loadManifest(t, "config/final.yml")
	name := fmt.Sprint(final["name"])
	cf := cfWithPcap(t)
	pcap := pcapInt(t)
	named(t, cf["releases"], name, "release")
	named(t, pcap["releases"], name, "release")
	var ours []string
	for _, item := range asList(pcap["instance_groups"]) {
		for _, j := range asList(asMap(t, item, "instance group")["jobs"]) {
			if job := asMap(t, j, "job"); job["release"] == name {
				ours = append(ours, fmt.Sprint(job["name"]))
			}
		}
	}
	for _, a := range asList(cf["addons"]) {
		for _, j := range asList(asMap(t, a, "add-on")["jobs"]) {
			if job := asMap(t, j, "job"); job["release"] == name {
				ours = append(ours, fmt.Sprint(job["name"]))
			}
		}
	}
	sort.Strings(ours)
	if !slices.Equal(ours, []string{"pcap-server", "pcap-server-api"}) {
		t.Errorf("the manifests use jobs %v of release %s", ours, name)
	}
}

// TestRenderedDeploymentsTunnel runs the API and two agents, all from
// configurations rendered out of the manifests (with loopback addresses in
// place of the VMs'): a cell's, from the cf deployment's add-on, and a
// router's, from the runtime config, with a certificate of its own. Both
// tunnels come up: the certificates, server name and CAs of the manifests
// work together in the real binaries.
func TestRenderedDeploymentsTunnel(t *testing.T) {
	d := interpolatedDeployments(t, nil)
	api, ctx := startRenderedAPI(t, d)
	wantID := "pcap-server-api/" + testInstance("pcap-server-api").ID
	for _, agent := range []struct {
		props map[string]any
		inst  Instance
	}{
		{d.agentProps, testInstance("pcap-server")},
		{hostAgentProperties(t, d), routerInstance},
	} {
		if line := api.tunnelUp(t, ctx, agent.props, agent.inst); !strings.Contains(line, `"api_id":"`+wantID+`"`) {
			t.Errorf("agent on %s: %s\nwant the tunnel up to API %s", agent.inst.Name, line, wantID)
		}
	}
}

// renderedAPI is pcap-server-api running from the API job rendered out of
// pcap-server.yml, on loopback addresses.
type renderedAPI struct {
	*runningAPI
	tunnelPort string
	listen     string // host:port of the HTTPS listener
}

// startRenderedAPI starts the API; the context it returns bounds the
// test's waits and ends the API's process with the test.
func startRenderedAPI(t *testing.T, d deployments) (*renderedAPI, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline(t))
	t.Cleanup(cancel)
	tunnel := freeAddress(t)
	_, tunnelPort, _ := net.SplitHostPort(tunnel)
	listen := freeAddress(t)
	apiProps := asMap(t, d.apiJob["properties"], "pcap-server-api properties")
	for key, value := range map[string]any{
		"listen.address":  listen,
		"tunnel.address":  tunnel,
		"metrics.address": freeAddress(t),
		"log_level":       "info",
		// Startup would otherwise ask the Cloud Controller for UAA's URL.
		"uaa.issuer": "https://uaa.sys.example.com/oauth/token",
	} {
		apiProps = setDotted(apiProps, key, value)
	}
	job := mustRenderJob(t, "pcap-server-api", apiProps)
	api := startAPI(t, ctx, binary(t, "pcap-server-api"), job.path(configFile("pcap-server-api")))
	t.Cleanup(func() {
		_ = api.cmd.Process.Signal(syscall.SIGTERM)
		<-api.exited
	})
	return &renderedAPI{runningAPI: api, tunnelPort: tunnelPort, listen: listen}, ctx
}

// tunnelUp runs the agent job rendered with props for inst, pointed at
// the API, and returns its log line that says the tunnel is up; the agent
// stops when the test ends.
func (a *renderedAPI) tunnelUp(t *testing.T, ctx context.Context, props map[string]any, inst Instance) string {
	t.Helper()
	for key, value := range map[string]any{
		// The manifest's DNS name, resolved here to loopback; the server
		// name checked stays the manifest's.
		"api.addresses":   []any{"localhost:" + a.tunnelPort},
		"cell_ips":        []any{"127.0.0.1"},
		"metrics.address": freeAddress(t),
		"garden.address":  filepath.Join(t.TempDir(), "garden.sock"),
	} {
		props = setDotted(props, key, value)
	}
	job, err := renderJobOn(t, "pcap-server", props, inst)
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.CommandContext(ctx, binary(t, "pcap-server"), "-config", job.path(configFile("pcap-server")))
	agentLog, err := agent.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan string, 1)
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		sc := bufio.NewScanner(agentLog)
		var seen strings.Builder
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), `"msg":"tunnel up"`) {
				select {
				case up <- sc.Text():
				default:
				}
			}
		}
		select {
		case up <- "agent exited:\n" + seen.String():
		default:
		}
		_ = agent.Wait()
	}()
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		<-agentDone
	})

	select {
	case line := <-up:
		return line
	case <-ctx.Done():
		t.Fatalf("no tunnel within %s; API log:\n%s", deadline(t), a.logText())
		return ""
	}
}
