package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/internal/configfile"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// The BOSH topology: a hub namespace holds the API, the fake director and
// its UAA (on the hub's loopback) and runs the CLI; each VM is a namespace
// of its own, joined to the hub, whose agent runs in it in host mode, so
// that its host devices are the namespace's. All of them are real
// processes of the built binaries.
const (
	boshAPIPort    = 8080
	boshTunnelPort = 9494
	boshUDPPort    = 9999
)

type boshWorld struct {
	star     *netnstest.Star
	uaa      *fakeuaa.UAA
	director *fakebosh.Director
	vms      []fakebosh.Instance // VM i+1 of the star is vms[i]
	pki      *pki
	apiURL   string
	audit    string
	apiLog   *logWatch
	caFile   string
}

// newBoshWorld starts everything but the agents: n VM namespaces and
// deployment cf (team platform) with router/0..n-1 on them, plus router/n
// without a VM; deployment mysql belongs to team data.
func newBoshWorld(t *testing.T, n int) *boshWorld {
	t.Helper()
	netnstest.RequireRoot(t)
	w := &boshWorld{star: netnstest.NewStar(t, n), pki: newPKI(t)}
	hub := w.star.Hub
	w.uaa = fakeuaa.New(t, fakeuaa.DirectorUAA(), fakeuaa.ServeOn(hub.Listen(t, "127.0.0.1:0")))
	w.director = fakebosh.New(t, w.uaa, fakebosh.ServeOn(hub.Listen(t, "127.0.0.1:0")))
	for i := 1; i <= n; i++ {
		w.vms = append(w.vms, fakebosh.NewVM("router", i-1, fmt.Sprintf("z%d", i), netnstest.VMIP(i).String()))
	}
	w.director.AddDeployment(fakebosh.Deployment{Name: "cf", Teams: []string{"platform"}},
		append(slices.Clone(w.vms), fakebosh.Instance{Group: "router", Index: n, ID: "0ff1ce00-0000-4000-8000-000000000000", AZ: "z1"})...)
	w.director.AddDeployment(fakebosh.Deployment{Name: "mysql", Teams: []string{"data"}}, fakebosh.NewVM("mysql", 0, "z1", "198.18.200.2"))

	dir := t.TempDir()
	w.caFile = filepath.Join(dir, "director-ca.pem")
	if err := os.WriteFile(w.caFile, w.director.CA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.audit = filepath.Join(dir, "audit.log")
	// The API for BOSH VMs only: no Cloud Controller, no dev mode; the
	// director's UAA found through /info, trusted with the director's CA.
	cfg := apiconfig.Default()
	cfg.ID = "pcap-server-api/bosh-e2e"
	cfg.LogLevel = "debug"
	cfg.Listen.Address = fmt.Sprintf("0.0.0.0:%d", boshAPIPort)
	cfg.Tunnel.Address = fmt.Sprintf("0.0.0.0:%d", boshTunnelPort)
	cfg.Tunnel.TLS = apiconfig.TunnelTLS{Certificate: w.pki.apiCert, PrivateKey: w.pki.apiKey, ClientCA: w.pki.ca}
	cfg.Tunnel.KeepaliveInterval = configfile.Duration(time.Second)
	cfg.Metrics.Address = "127.0.0.1:9495"
	cfg.AuditLog = w.audit
	cfg.Bosh = &apiconfig.Bosh{DirectorURL: w.director.URL, CA: w.caFile}
	path := writeYAML(t, dir, "api.yml", cfg)
	cmd := hub.Command(binary(t, "pcap-server-api"), "-config", path)
	w.apiLog = watchLog(t, cmd)
	w.apiURL = fmt.Sprintf("http://127.0.0.1:%d", boshAPIPort)
	w.apiLog.wait(t, "started", nil)
	return w
}

// writeYAML writes v as the YAML file dir/name (a binary's configuration)
// and returns its path.
func writeYAML(t testing.TB, dir, name string, v any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// agent is the config of VM i's agent, saying hello as vm, in host mode.
func (w *boshWorld) agent(i int, vm fakebosh.Instance) agentconfig.Config {
	cfg := agentconfig.Default()
	cfg.LogLevel = "debug"
	cfg.CellIPs = []string{netnstest.VMIP(i).String()}
	cfg.API.Addresses = []string{fmt.Sprintf("%s:%d", netnstest.HubIP(i), boshTunnelPort)}
	cfg.API.TLS = agentconfig.ClientTLS{Certificate: w.pki.agentCert, PrivateKey: w.pki.agentKey, CA: w.pki.ca, ServerName: "pcap-server-api.service.cf.internal"}
	cfg.API.KeepaliveInterval = configfile.Duration(time.Second)
	cfg.Metrics.Address = ""
	cfg.HostCapture.Enabled = true
	cfg.Bosh = &agentconfig.Bosh{Deployment: "cf", InstanceGroup: vm.Group, ID: vm.ID, Index: vm.Index, AZ: vm.AZ}
	return cfg
}

// startAgent runs cfg's agent in VM i and waits until the API has it.
func (w *boshWorld) startAgent(t *testing.T, i int, cfg agentconfig.Config) {
	t.Helper()
	path := writeYAML(t, t.TempDir(), "agent.yml", cfg)
	cmd := w.star.VMs[i-1].Command(binary(t, "pcap-server"), "-config", path)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(cmd, 20*time.Second); err != nil {
			t.Errorf("agent of VM %d: %v", i, err)
		}
	})
	w.apiLog.wait(t, "agent connected", map[string]string{"agent_id": cfg.Bosh.ID, "remote": netnstest.VMIP(i).String()})
}

// waitExit waits for cmd, killing it after d.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() <= 0 {
			return nil // ended by the signal
		}
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %s", d)
	}
}

// home is a HOME with a bosh CLI config: environment "e2e" logged in with
// access (and refresh) tokens.
func (w *boshWorld) home(t *testing.T, access, refresh string) string {
	t.Helper()
	home := t.TempDir()
	cfg := map[string]any{"environments": []map[string]any{{
		"url": w.director.URL, "ca_cert": string(w.director.CA.CertPEM()), "alias": "e2e",
		"access_token": access, "access_token_type": "bearer", "refresh_token": refresh,
	}}}
	if err := os.Mkdir(filepath.Join(home, ".bosh"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeYAML(t, filepath.Join(home, ".bosh"), "config", cfg)
	return home
}

// opsToken is a bosh_cli user token with these scopes.
func (w *boshWorld) opsToken(scopes []string, opts ...fakeuaa.TokenOption) string {
	return w.uaa.UserToken("ops", append([]fakeuaa.TokenOption{fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(scopes...), fakeuaa.UserName("ops")}, opts...)...)
}

// cli is pcap-server-cli bosh in the hub, with HOME and more of the
// environment.
func (w *boshWorld) cli(t *testing.T, env []string, args ...string) *exec.Cmd {
	cmd := w.star.Hub.Command(binary(t, "pcap-server-cli"), append([]string{"bosh", "-e", "e2e", "-d", "cf", "--api-url", w.apiURL}, args...)...)
	cmd.Env = append(os.Environ(), "PCAP_API_URL=", "BOSH_ENVIRONMENT=", "BOSH_CLIENT=", "BOSH_CLIENT_SECRET=", "BOSH_CA_CERT=", "BOSH_CONFIG=")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// send sends n datagrams tagged tag from VM i to the hub.
func (w *boshWorld) send(t *testing.T, i int, tag string, n int) {
	t.Helper()
	conn := w.star.VMs[i-1].DialUDP(t, netip.AddrPortFrom(netnstest.HubIP(i), boshUDPPort))
	for k := range n {
		if _, err := conn.Write(payload(tag, k)); err != nil {
			t.Fatalf("send %d: %v", k, err)
		}
	}
}

// Operators capture BOSH VMs with the bosh CLI's login: two VMs' agents
// in host mode, each in its own namespace, one merged pcapng with an
// interface per VM and device, named GROUP/INDEX/DEVICE and described
// with the deployment, the instance, the az, the IP and the device; the
// token refreshed at the director's UAA and written back; the VM without
// a VM named; the audit line. Then the refusals, each with its status.
func TestBoshCaptureOfVMs(t *testing.T) {
	w := newBoshWorld(t, 4)
	w.star.Hub.ListenUDP(t, netip.AddrPortFrom(netip.IPv4Unspecified(), boshUDPPort))
	w.startAgent(t, 1, w.agent(1, w.vms[0]))
	w.startAgent(t, 2, w.agent(2, w.vms[1]))
	off := w.agent(3, w.vms[2])
	off.HostCapture.Enabled = false
	w.startAgent(t, 3, off)
	// VM 4's agent says it is VM 1.
	w.startAgent(t, 4, w.agent(4, w.vms[0]))

	admin := []string{"openid", fakeuaa.ScopeBoshAdmin}
	refresh := w.uaa.RefreshToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(admin...), fakeuaa.UserName("ops"))
	expiring := w.opsToken(admin, fakeuaa.ExpiresAt(time.Now().Add(20*time.Second)))
	home := w.home(t, expiring, refresh)

	out := filepath.Join(t.TempDir(), "routers.pcapng")
	cmd := w.cli(t, []string{"HOME=" + home}, "router/0", "router/1", "router/4", "-f", fmt.Sprintf("udp port %d", boshUDPPort), "-c", "10", "-o", out)
	lines, stderr := startWatchingStderr(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing deployment cf, instance\(s\) router/0,router/1, into `))
	w.send(t, 1, "vm1", 5)
	w.send(t, 2, "vm2", 5)
	for range lines {
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"Not captured: router/4: the director lists no VM", "10 packets", "ended: packet count reached"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	rows := tshark(t, out, "frame.interface_name", "frame.interface_description", "udp.payload")
	if len(rows) != 10 {
		t.Fatalf("%d packets in the file, want 10", len(rows))
	}
	seen := map[string]int{}
	for _, r := range rows {
		name, desc, data := r[0], r[1], r[2]
		i := map[string]int{"router/0/eth0": 1, "router/1/eth0": 2}[name]
		if i == 0 {
			t.Fatalf("a packet on interface %q", name)
		}
		vm := w.vms[i-1]
		for _, part := range []string{"deployment cf", "instance " + name[:len(name)-len("/eth0")], "id " + vm.ID, "az " + vm.AZ, "IP " + vm.IPs[0], "device eth0"} {
			if !strings.Contains(desc, part) {
				t.Errorf("interface %s description %q lacks %q", name, desc, part)
			}
		}
		if want := hexOf(payload(fmt.Sprintf("vm%d", i), seen[name])); !strings.EqualFold(strings.ReplaceAll(data, ":", ""), want) {
			t.Errorf("packet %d of %s carries %s, want %s", seen[name], name, data, want)
		}
		seen[name]++
	}

	// The token was refreshed at the director's UAA and written back.
	cfg, err := os.ReadFile(filepath.Join(home, ".bosh", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cfg, []byte(expiring)) || !bytes.Contains(cfg, []byte(refresh)) || w.uaa.Requests(fakeuaa.PostToken) != 1 {
		t.Errorf("%d refreshes; config after the capture:\n%s", w.uaa.Requests(fakeuaa.PostToken), cfg)
	}

	// The audit line: who, which deployment and instances, how it ended.
	rec := lastAudit(t, w.audit, "capture")
	if rec["target"] != "bosh" || rec["deployment"] != "cf" || rec["user_name"] != "ops" || rec["client_id"] != "bosh_cli" ||
		!slices.Equal(toStrings(rec["instances"]), []string{"router/0", "router/1"}) ||
		!slices.Contains(toStrings(rec["instance_ids"]), w.vms[0].ID) || rec["end_reason"] != "packets" || rec["packets"] != 10.0 {
		t.Errorf("audit %v", rec)
	}

	// Refusals, each with a status that says whose no it is.
	fresh := func(scopes ...string) string {
		return w.home(t, w.opsToken(scopes), w.uaa.RefreshToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(scopes...)))
	}
	for _, c := range []struct {
		name, home, instance string
		status               int
		text                 string
	}{
		{"a read-only token", fresh(fakeuaa.ScopeBoshRead), "router/0", 403, "read scopes do not suffice"},
		{"a team admin of another deployment", fresh(fakeuaa.BoshTeamAdmin("data")), "router/0", 403, "not a deployment of your teams (data)"},
		{"read beside another team's admin", fresh(fakeuaa.ScopeBoshRead, fakeuaa.BoshTeamAdmin("data")), "router/0", 403, "belongs to teams platform"},
		{"an agent claiming another VM's id", home, "router/3", 502, "identity mismatch: the agent at 198.18.4.2 says it is instance router/0 (" + w.vms[0].ID + ")"},
		{"host capture switched off", home, "router/2", 403, "host capture is not enabled on VM router/2"},
		{"an instance without a VM", home, "router/4", 409, "the director lists no VM for instance router/4"},
		{"an unknown instance", home, "router/9", 404, "has no instance router/9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := w.cli(t, []string{"HOME=" + c.home}, c.instance, "-o", filepath.Join(t.TempDir(), "x.pcap"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(waitCmd(t, cmd)); code != 1 || !strings.Contains(stderr.String(), c.text) || !strings.Contains(stderr.String(), fmt.Sprintf("(HTTP %d)", c.status)) {
				t.Fatalf("exit %d, want 1 with %q and HTTP %d:\n%s", code, c.text, c.status, stderr.String())
			}
		})
	}
	if rec := lastAudit(t, w.audit, "refused"); rec["deployment"] != "cf" || rec["status"] != 404.0 {
		t.Errorf("last refusal audited as %v", rec)
	}
}

// BOSH_CLIENT and BOSH_CLIENT_SECRET capture without a bosh login: the
// client's token from the director's UAA, the director given by URL and
// BOSH_CA_CERT; on a terminal the progress shows, and Ctrl-C stops the
// capture through the API, which ends it with every packet and the
// trailers, as for apps.
func TestBoshCaptureWithClientCredentials(t *testing.T) {
	w := newBoshWorld(t, 1)
	w.star.Hub.ListenUDP(t, netip.AddrPortFrom(netip.IPv4Unspecified(), boshUDPPort))
	w.startAgent(t, 1, w.agent(1, w.vms[0]))
	w.uaa.AddClient("ops-ci", "s3cret", fakeuaa.ScopeBoshAdmin)
	out := filepath.Join(t.TempDir(), "router.pcap")
	cmd := w.cli(t, []string{"HOME=" + t.TempDir(), "BOSH_CLIENT=ops-ci", "BOSH_CLIENT_SECRET=s3cret", "BOSH_CA_CERT=" + w.caFile},
		"router/"+w.vms[0].ID, "-e", w.director.URL, "-f", fmt.Sprintf("udp port %d", boshUDPPort), "-o", out, "--duration", "1m")
	tty, lines, screen := startInTerminal(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing deployment cf, instance\(s\) router/0, into `))
	w.send(t, 1, "ci", 7)
	waitLine(t, lines, regexp.MustCompile(`7 packets .* dropped`))
	if _, err := tty.Write([]byte{3}); err != nil { // Ctrl-C through the terminal
		t.Fatal(err)
	}
	if err := waitCmd(t, cmd); err != nil {
		t.Fatalf("cli exited with %v:\n%s", err, screen.String())
	}
	summary := waitLine(t, lines, regexp.MustCompile(`packets, .* written to`))
	if !strings.Contains(summary, "7 packets") || !strings.Contains(summary, "ended: stopped on request") {
		t.Fatalf("summary %q", summary)
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 7 {
		t.Fatalf("%d packets", len(rows))
	}
	if rec := lastAudit(t, w.audit, "capture"); rec["client_id"] != "ops-ci" || rec["end_reason"] != "requested" {
		t.Errorf("audit %v", rec)
	}
}

// Without a bosh section the API has no BOSH endpoints and contacts no
// director.
func TestBoshAbsentContactsNothing(t *testing.T) {
	p := newPKI(t)
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	d := fakebosh.New(t, u)
	api := startAPI(t, p, []apiconfig.DevTarget{{AppGUID: appGUID, AppName: appName, Index: 0, CellIP: "127.0.0.2"}}, nil)
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		path := "/v1/bosh/deployments/cf/capture?instance=router/0"
		if method == http.MethodDelete {
			path = "/v1/bosh/deployments/cf/capture/0123456789abcdef"
		}
		req, _ := http.NewRequest(method, api.url+path, nil)
		req.Header.Set("Authorization", "bearer "+u.ClientToken("ops", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	if n := d.TotalRequests() + u.TotalRequests(); n != 0 {
		t.Errorf("%d requests to the director and its UAA", n)
	}
}

// lastAudit is the last audit line of event.
func lastAudit(t *testing.T, path, event string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec["event"] == event {
			last = rec
		}
	}
	if last == nil {
		t.Fatalf("no %s line in the audit log:\n%s", event, data)
	}
	return last
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// logWatch follows a process's JSON log lines, so that a test can await
// what it logs (a replica started, an agent connected) instead of
// sleeping.
type logWatch struct {
	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{}
	done    chan struct{}
}

// watchLog starts cmd with its stderr followed (and copied to the test's
// output); it is stopped with SIGTERM when the test ends.
func watchLog(t *testing.T, cmd *exec.Cmd) *logWatch {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &logWatch{changed: make(chan struct{}), done: make(chan struct{})}
	out := t.Output()
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(io.TeeReader(pipe, out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			l.mu.Lock()
			l.lines = append(l.lines, line)
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(cmd, 60*time.Second); err != nil {
			t.Errorf("%s: %v", filepath.Base(cmd.Args[len(cmd.Args)-3]), err)
		}
		<-l.done
	})
	return l
}

// wait waits for a line with msg whose fields contain want (the field's
// text includes the value).
func (l *logWatch) wait(t *testing.T, msg string, want map[string]string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for seen := 0; ; {
		l.mu.Lock()
		lines, changed := l.lines[seen:], l.changed
		seen = len(l.lines)
		l.mu.Unlock()
		for _, line := range lines {
			if line["msg"] != msg {
				continue
			}
			ok := true
			for k, v := range want {
				if !strings.Contains(fmt.Sprint(line[k]), v) {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		select {
		case <-changed:
		case <-l.done:
			t.Fatalf("the process ended before logging %q %v", msg, want)
		case <-timeout:
			t.Fatalf("no %q %v logged within 30s", msg, want)
		}
	}
}
