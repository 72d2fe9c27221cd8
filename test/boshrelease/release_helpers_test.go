package boshrelease

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{built.dir, builtRelease.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// repoRoot is the repository's top directory (tests run in their package's).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "jobs")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no repository root (go.mod next to jobs/) above the test's directory")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := "/usr/local/go/bin/go"; fileExists(p) {
		return p
	}
	t.Fatal("no go toolchain on PATH or in /usr/local/go")
	return ""
}

// built holds the binaries the tests run, built once per test process.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// binary returns the path of pcap-server-api, pcap-server,
// pcap-server-cli or fakedaemon.
func binary(t *testing.T, name string) string {
	t.Helper()
	root := repoRoot(t)
	gobin := goTool(t)
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "boshrelease-bin-"); built.err != nil {
			return
		}
		cmd := exec.Command(gobin, "build", "-o", built.dir+string(filepath.Separator),
			"./proxy/cmd/pcap-server-api", "./cellagent/cmd/pcap-server", "./cli/cmd/pcap-server-cli", "./test/boshrelease/testdata/fakedaemon")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, name)
}

// testPKI stands in for the certificates BOSH generates from the manifests'
// variables, with the same names and extended key usages.
type testPKI struct {
	tunnelCA, apiCA, cfCA *testpki.CA
	apiTunnel             *testpki.Leaf // pcap_api_tunnel_tls
	agent                 *testpki.Leaf // pcap_agent_tls
	apiListen             *testpki.Leaf // pcap_api_listen_tls
	scraperCA             *testpki.CA   // cf-deployment's metric_scraper_ca
	agentMetrics          *testpki.Leaf // pcap_server_metrics_tls
	apiMetrics            *testpki.Leaf
	directorCA            *testpki.CA // the BOSH director's and its UAA's
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	var p testPKI
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	p.tunnelCA, err = testpki.NewCA("pcap-server tunnel CA")
	must(err)
	p.apiCA, err = testpki.NewCA("pcap-server API CA")
	must(err)
	p.cfCA, err = testpki.NewCA("router CA")
	must(err)
	p.apiTunnel, err = p.tunnelCA.Issue("pcap-server-api.service.cf.internal", []string{"pcap-server-api.service.cf.internal"}, x509.ExtKeyUsageServerAuth)
	must(err)
	p.agent, err = p.tunnelCA.Issue("pcap-server agent", nil, x509.ExtKeyUsageClientAuth)
	must(err)
	p.apiListen, err = p.apiCA.Issue("pcap.sys.example.com", []string{"pcap.sys.example.com"}, x509.ExtKeyUsageServerAuth)
	must(err)
	p.scraperCA, err = testpki.NewCA("metricScraperCA")
	must(err)
	p.agentMetrics, err = p.scraperCA.Server("agent_metrics.example")
	must(err)
	p.apiMetrics, err = p.scraperCA.Server("api_metrics.example")
	must(err)
	p.directorCA, err = testpki.NewCA("default_ca")
	must(err)
	return &p
}

// testInstance is the VM a job renders for in these tests.
func testInstance(job string) Instance {
	if job == "pcap-server-api" {
		return Instance{ID: "5e1c9a2b-7d4f-4c3e-9a8b-1f2e3d4c5b6a", IP: "10.0.20.7", Name: "pcap-server-api",
			Index: 1, Deployment: "pcap-server", AZ: "z2", Address: "5e1c9a2b.pcap-server-api.default.pcap-server.bosh"}
	}
	return Instance{ID: "0d7c3f6e-2b1a-4e5d-8c9f-6a5b4c3d2e1f", IP: "10.0.16.5", Name: "diego-cell",
		Index: 3, Deployment: "cf", AZ: "z1", Address: "0d7c3f6e.diego-cell.default.cf.bosh"}
}

// renderedJob is a job rendered under root as if root were /var/vcap: the
// job's files are in root/jobs/NAME and every /var/vcap/ path in them was
// rewritten to point under root, so the binaries find the certificates.
type renderedJob struct {
	root, name string
}

func (r renderedJob) path(rel string) string { return filepath.Join(r.root, "jobs", r.name, rel) }

// rewrite points the paths that BOSH lays out (jobs, packages, logs, run
// and BOSH's own tools) under root. Paths of other software on the VM,
// such as garden's under /var/vcap/data, stay.
func (r renderedJob) rewrite(s string) string {
	for _, dir := range []string{"jobs", "packages", "sys", "bosh"} {
		s = strings.ReplaceAll(s, "/var/vcap/"+dir+"/", r.root+"/"+dir+"/")
	}
	return s
}

func (r renderedJob) read(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(r.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (r renderedJob) yaml(t *testing.T, rel string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(r.read(t, rel), &doc); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return doc
}

func renderJob(t *testing.T, job string, props map[string]any) (renderedJob, error) {
	t.Helper()
	return renderJobOn(t, job, props, testInstance(job))
}

// renderJobOn renders job for the instance inst.
func renderJobOn(t *testing.T, job string, props map[string]any, inst Instance) (renderedJob, error) {
	t.Helper()
	r := renderedJob{root: t.TempDir(), name: job}
	err := Render(context.Background(), RenderRequest{
		JobDir:     filepath.Join(repoRoot(t), "jobs", job),
		OutDir:     filepath.Join(r.root, "jobs", job),
		Properties: props,
		Instance:   inst,
	})
	if err != nil {
		return r, err
	}
	err = filepath.WalkDir(filepath.Join(r.root, "jobs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		return os.WriteFile(path, []byte(r.rewrite(string(data))), st.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
	// What the packages and BOSH provide on a VM.
	for _, d := range []string{"packages/pcap-server-api/cli", "sys/log/" + job, "sys/run/" + job, "sys/run/bpm/" + job, "bosh/bin"} {
		if err := os.MkdirAll(filepath.Join(r.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r, nil
}

func mustRenderJob(t *testing.T, job string, props map[string]any) renderedJob {
	t.Helper()
	r, err := renderJob(t, job, props)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkConfig runs BINARY -config FILE -check-config.
func checkConfig(t *testing.T, bin, config string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, "-config", config, "-check-config").CombinedOutput()
	return string(out), err
}

// configFile is the job's main config, which its binary reads.
func configFile(job string) string { return "config/" + job + ".yml" }

// jobSpec loads jobs/NAME/spec.
func jobSpec(t testing.TB, job string) *JobSpec {
	t.Helper()
	s, err := LoadJobSpec(filepath.Join(repoRoot(t), "jobs", job, "spec"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// configKeys lists the dotted YAML keys of a config struct, down to its
// leaves (scalars, lists, maps and named scalar types).
func configKeys(typ reflect.Type, prefix string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return []string{prefix}
	}
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		name := tag
		if prefix != "" {
			name = prefix + "." + tag
		}
		keys = append(keys, configKeys(typ.Field(i).Type, name)...)
	}
	sort.Strings(keys)
	return keys
}

// leafKeys lists the dotted keys of a decoded YAML document down to its
// non-map values.
func leafKeys(doc any, prefix string) []string {
	m, ok := doc.(map[string]any)
	if !ok {
		return []string{prefix}
	}
	var keys []string
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		keys = append(keys, leafKeys(v, name)...)
	}
	sort.Strings(keys)
	return keys
}

func lookupDotted(doc any, dotted string) (any, bool) {
	for _, k := range strings.Split(dotted, ".") {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[k]; !ok {
			return nil, false
		}
	}
	return doc, true
}

// setDotted returns props with the dotted key set (nil value: removed).
func setDotted(props map[string]any, dotted string, value any) map[string]any {
	out := normalize(props).(map[string]any)
	keys := strings.Split(dotted, ".")
	m := out
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if value == nil {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = value
	}
	return out
}

// normalize makes values from different decoders comparable, and is a
// deep copy.
func normalize(v any) any {
	data, err := yaml.Marshal(v)
	if err != nil {
		panic(err) // maps, slices and scalars of YAML always marshal
	}
	var out any
	if err := yaml.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}

// runningAPI is a pcap-server-api process started by a test.
type runningAPI struct {
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	logs   strings.Builder
}

func (a *runningAPI) logText() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

// startAPI runs BIN -config CONFIG and returns once the API has logged
// that it started (its listeners are up). ctx ends the process.
func startAPI(t *testing.T, ctx context.Context, bin, config string) *runningAPI {
	t.Helper()
	a := &runningAPI{cmd: exec.CommandContext(ctx, bin, "-config", config), exited: make(chan error, 1)}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			a.mu.Lock()
			a.logs.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			if !once && strings.Contains(sc.Text(), `"msg":"started"`) {
				once = true
				close(started)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		a.exited <- a.cmd.Wait()
	}()
	select {
	case <-started:
	case err := <-a.exited:
		t.Fatalf("%s exited at start: %v\n%s", bin, err, a.logText())
	case <-ctx.Done():
		t.Fatalf("%s did not log that it started:\n%s", bin, a.logText())
	}
	return a
}
