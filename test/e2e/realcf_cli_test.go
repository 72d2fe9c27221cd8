package e2e

import (
	"bufio"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
	"github.com/cloudfoundry/pcap-server-release/test/testpki"
)

// The plugin under the real cf CLI (cf 9, ../shared/realcf), against the
// real API in CF mode with the fake Cloud Controller and UAA, and a real
// agent capturing an app's network namespace. cf reaches the foundation
// by name, as a user's does: api.SYS is the Cloud Controller, and the
// plugin derives the API, pcap.SYS, from it (same port, another loopback
// address).

const realSys = "sys.realcf.test"

// realCFWorld is a foundation, a real API and agent, and a real cf CLI
// logged in as the space developer with the plugin installed.
type realCFWorld struct {
	f     *foundation
	api   *apiProc
	app   *app
	cf    *realcf.CF
	agent *exec.Cmd // when the agent runs as a process of its own
}

type realCFOptions struct {
	// tokenLifetime, if set, is how long UAA's access tokens live.
	tokenLifetime time.Duration
	// agentProcess runs the agent binary rather than in-process, so the
	// test can freeze it.
	agentProcess bool
}

func newRealCFWorld(t *testing.T, opts realCFOptions) *realCFWorld {
	t.Helper()
	b := realcf.Require(t, "cf CLI")
	netnstest.RequireRoot(t)
	w := &realCFWorld{f: newFoundation(t, fakecc.ServerNames("api."+realSys)), app: newApp(t)}
	const password = "dev-password"
	w.f.uaa.AddUser(w.f.developer, password)
	if opts.tokenLifetime > 0 {
		w.f.uaa.SetAccessTokenValidity(opts.tokenLifetime)
	}
	ccURL, err := url.Parse(w.f.cc.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := ccURL.Port()

	// The API serves HTTPS as pcap.SYS, as the gorouter's route does.
	dir := t.TempDir()
	ca, err := testpki.NewCA("pcap API CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("pcap." + realSys)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.WriteFiles(dir, "api-listen")
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	w.api = startAPI(t, p, nil, func(c *apiconfig.Config) {
		w.f.cfMode(c)
		c.Listen.Address = "127.0.0.2:" + port
		c.Listen.TLS = &apiconfig.ServerTLS{Certificate: cert, PrivateKey: key}
	})
	w.f.running(fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "handle-0"})
	netns := map[string]string{w.f.app.GUID + "/0": w.app.pair.App.Path()}
	if opts.agentProcess {
		w.agent = startAgentProcess(t, p, w.api, "127.0.0.1", netns)
	} else {
		startAgent(t, p, w.api, "127.0.0.1", netns)
	}

	bundle, err := os.ReadFile(w.f.caBundle)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "trusted.pem")
	if err := os.WriteFile(caFile, append(bundle, ca.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	w.cf = b.NewCF(t, realcf.CFOptions{
		Hosts:  map[string]string{"api." + realSys: "127.0.0.1", "pcap." + realSys: "127.0.0.2"},
		CAFile: caFile,
	})
	w.cf.Login("https://api."+realSys+":"+port, w.f.developer, password, "org", w.f.space.Name)
	if out := w.cf.Run("install-plugin", "-f", binary(t, "pcap-server-cli")); !strings.Contains(out, "successfully installed") {
		t.Fatalf("cf install-plugin: %s", out)
	}
	return w
}

// cfRun is a cf command started in its own process group, as a shell
// starts a foreground job. Its stderr is a pipe the plugin shares: the
// pipe ends only once cf and the plugin have both exited, even when the
// plugin outlives cf.
type cfRun struct {
	cmd    *exec.Cmd
	lines  <-chan string
	stderr *syncBuffer
}

// start runs `cf ARGS...` with the extra environment; stdout goes to
// stdout if given, else nowhere.
func (w *realCFWorld) start(t *testing.T, env []string, stdout *os.File, args ...string) *cfRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := w.cf.Command(ctx, env, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// An *os.File is handed to cf as it is: no copying that Wait would
	// cut short when cf exits before the plugin.
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { _ = cmd.Wait() })
	lines := make(chan string, 100)
	all := &syncBuffer{}
	go func() {
		defer close(lines)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			all.Write([]byte(sc.Text() + "\n"))
			lines <- sc.Text()
		}
	}()
	return &cfRun{cmd: cmd, lines: lines, stderr: all}
}

// wait returns line matching re.
func (r *cfRun) wait(t *testing.T, re string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				t.Fatalf("stderr ended before a line matching %s:\n%s", re, r.stderr.String())
			}
			if regexp.MustCompile(re).MatchString(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line matching %s within 30s:\n%s", re, r.stderr.String())
		}
	}
}

// ended waits until cf and the plugin have both exited (their stderr has
// ended) and returns cf's exit status as a shell shows it.
func (r *cfRun) ended(t *testing.T) int {
	t.Helper()
	timeout := time.After(45 * time.Second)
	for done := false; !done; {
		select {
		case _, ok := <-r.lines:
			done = !ok
		case <-timeout:
			t.Fatalf("the plugin still ran 45s later:\n%s", r.stderr.String())
		}
	}
	err := r.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("cf: %v", err)
	}
	return 0
}

// tsharkReading starts `tshark -r -` and returns the pipe to its stdin,
// for a writer of a pcap stream, and a function that waits for tshark and
// returns the UDP payload of each packet it read. tshark must find
// nothing wrong with the stream.
func tsharkReading(t *testing.T) (*os.File, func() []string) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ts := exec.Command("tshark", "-r", "-", "-T", "fields", "-e", "udp.payload")
	ts.Stdin = pr
	var out, stderr syncBuffer
	ts.Stdout, ts.Stderr = &out, &stderr
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	return pw, func() []string {
		t.Helper()
		if err := waitCmd(t, ts); err != nil {
			t.Fatalf("tshark -r -: %v\n%s", err, stderr.String())
		}
		return strings.Fields(out.String())
	}
}

// pluginPID is the running plugin's pid.
func (w *realCFWorld) pluginPID(t *testing.T) int {
	t.Helper()
	pids := w.cf.PluginPIDs()
	if len(pids) != 1 {
		t.Fatalf("%d plugin processes run: %v", len(pids), pids)
	}
	return pids[0]
}

// summaryOK checks the plugin's summary of a capture that was stopped
// gracefully: n packets and every trailer.
func summaryOK(t *testing.T, r *cfRun, summary string, n int) {
	t.Helper()
	if !strings.Contains(summary, strconv.Itoa(n)+" packets") || !strings.Contains(summary, "ended: stopped on request") ||
		!strings.Contains(summary, "dropped: 0 (kernel=0 agent=0 api=0)") {
		t.Fatalf("summary %q:\n%s", summary, r.stderr.String())
	}
}

// The plugin's life under cf: installed (by the world), a capture to a
// file with the API URL, the token and the space from cf, a capture to
// stdout read by tshark, and uninstalled.
func TestRealCFInstallCaptureUninstall(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{})
	if out := w.cf.Run("plugins"); !regexp.MustCompile(`(?m)^pcap\s+\S+\s+pcap, tcpdump`).MatchString(out) {
		t.Fatalf("cf plugins:\n%s", out)
	}

	out := filepath.Join(t.TempDir(), "file.pcap")
	r := w.start(t, nil, nil, "pcap", appName, "-i", "0", "-f", "udp", "-c", "5", "-o", out)
	r.wait(t, `^Capturing app my-app, instance\(s\) 0`)
	w.app.send(t, "cf-file", 5)
	summary := r.wait(t, `packets, .* written to`)
	if code := r.ended(t); code != 0 || !strings.Contains(summary, "5 packets") || !strings.Contains(summary, "ended: packet count reached") {
		t.Fatalf("cf exit %d, summary %q", code, summary)
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 5 {
		t.Fatalf("%d packets in the file", len(rows))
	}

	// cf pcap -o - | tshark -r -
	stdin, read := tsharkReading(t)
	r = w.start(t, nil, stdin, "pcap", appName, "-i", "0", "-f", "udp", "-c", "4", "-o", "-")
	stdin.Close()
	r.wait(t, `^Capturing app my-app`)
	w.app.send(t, "cf-stdout", 4)
	if code := r.ended(t); code != 0 {
		t.Fatalf("cf exit %d:\n%s", code, r.stderr.String())
	}
	if rows := read(); len(rows) != 4 || rows[0] != hexOf(payload("cf-stdout", 0)) {
		t.Fatalf("tshark read %d packets from cf's stdout: %q", len(rows), rows)
	}

	if out := w.cf.Run("uninstall-plugin", "pcap"); !strings.Contains(out, "successfully uninstalled") {
		t.Fatalf("cf uninstall-plugin: %s", out)
	}
	if out := w.cf.Run("plugins"); strings.Contains(out, "pcap, tcpdump") {
		t.Fatalf("still listed after uninstall:\n%s", out)
	}
	if _, err := os.Stat(w.cf.PluginPath("pcap")); !os.IsNotExist(err) {
		t.Fatalf("the plugin binary is still there: %v", err)
	}
}

// captureUntilStopped starts `cf pcap` for a minute, sends n datagrams
// once it captures and returns the run and the output file.
func (w *realCFWorld) captureUntilStopped(t *testing.T, env []string, n int) (*cfRun, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stopped.pcap")
	r := w.start(t, env, nil, "pcap", appName, "-i", "0", "-f", "udp", "--duration", "1m", "-o", out)
	r.wait(t, `^Capturing app my-app`)
	w.app.send(t, "cf-stop", n)
	return r, out
}

// stoppedGracefully checks that the plugin ended the capture with the
// stop request: every packet, the trailers, a valid file, exit 0 of the
// plugin itself (its summary; cf's status is the caller's business).
func (w *realCFWorld) stoppedGracefully(t *testing.T, r *cfRun, out string, n int) int {
	t.Helper()
	summary := r.wait(t, `packets, .* written to`)
	code := r.ended(t)
	summaryOK(t, r, summary, n)
	if rows := tshark(t, out, "udp.payload"); len(rows) != n {
		t.Fatalf("%d packets in the file, want %d", len(rows), n)
	}
	if left := w.cf.PluginPIDs(); len(left) != 0 {
		t.Fatalf("plugin processes left: %v", left)
	}
	return code
}

// A terminal's Ctrl-C or a CI runner's SIGTERM reaches cf and the plugin
// together (one process group): cf dies at once (130, 143), the plugin
// stops the capture gracefully on its own.
func TestRealCFSignalToTheProcessGroup(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{})
	for _, c := range []struct {
		sig  syscall.Signal
		exit int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			r, out := w.captureUntilStopped(t, nil, 6)
			realcf.Interrupt(t, r.cmd, c.sig)
			if code := w.stoppedGracefully(t, r, out, 6); code != c.exit {
				t.Fatalf("cf exit %d, want %d", code, c.exit)
			}
		})
	}
}

// Bug (issue 16, 4): a kill of cf alone (a cancelled CI job) orphaned the
// plugin without a signal, and it captured on to the end of --duration.
// It notices cf's death and stops gracefully.
func TestRealCFKillOfCfAlone(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{})
	for _, c := range []struct {
		sig  syscall.Signal
		exit int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			r, out := w.captureUntilStopped(t, nil, 4)
			if err := syscall.Kill(r.cmd.Process.Pid, c.sig); err != nil {
				t.Fatal(err)
			}
			r.wait(t, `^The cf CLI exited: stopping the capture`)
			if code := w.stoppedGracefully(t, r, out, 4); code != c.exit {
				t.Fatalf("cf exit %d, want %d", code, c.exit)
			}
		})
	}
}

// A script that signals the plugin rather than cf keeps cf alive: cf then
// exits with the plugin's own status, 0 for a graceful stop (README).
func TestRealCFSignalToThePluginAlone(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{})
	r, out := w.captureUntilStopped(t, nil, 3)
	if err := syscall.Kill(w.pluginPID(t), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := w.stoppedGracefully(t, r, out, 3); code != 0 {
		t.Fatalf("cf exit %d, want the plugin's 0", code)
	}
}

// Ctrl-C typed at a terminal, with a shell's job control in between: cf
// dies (the shell says 130), the plugin, orphaned in the background, stops
// the capture and prints its summary on the terminal.
func TestRealCFCtrlCAtATerminal(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{})
	sh := w.cf.Shell(t)
	out := filepath.Join(t.TempDir(), "terminal.pcap")
	sh.Type("cf pcap my-app -i 0 -f udp --duration 1m -o " + out + "\n")
	sh.Expect(regexp.MustCompile(`Capturing app my-app`), 30*time.Second)
	w.app.send(t, "cf-tty", 7)
	// The live progress shows them: they reached the plugin.
	sh.Expect(regexp.MustCompile(`7 packets .* dropped`), 30*time.Second)
	pid := w.pluginPID(t)
	sh.CtrlC()
	sh.Expect(regexp.MustCompile(regexp.QuoteMeta(realcf.Prompt)), 10*time.Second)
	// The plugin's last words and the shell's race on the terminal: wait
	// for the plugin to end, then read the screen as a whole.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := realcf.WaitExit(ctx, pid); err != nil {
		t.Fatalf("plugin: %v\n%s", err, sh.Screen())
	}
	sh.Type("echo \"cf-exit=$?\"\n")
	sh.Expect(regexp.MustCompile(`cf-exit=130`), 10*time.Second)
	summary := regexp.MustCompile(`\d+ packets, .* written to [^\n]*`).FindString(sh.Screen())
	if !strings.Contains(summary, "7 packets") || !strings.Contains(summary, "ended: stopped on request") ||
		!strings.Contains(summary, "dropped: 0 (kernel=0 agent=0 api=0)") {
		t.Fatalf("summary %q:\n%s", summary, sh.Screen())
	}
	if strings.Contains(sh.Screen(), "Ctrl-C again") {
		t.Errorf("the plugin suggests a second Ctrl-C, which would reach the shell:\n%s", sh.Screen())
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 7 {
		t.Fatalf("%d packets in the file", len(rows))
	}
}

// Bug (issue 16, 3): Ctrl-C after the token's lifetime had passed: cf
// died at once, the plugin's AccessToken for the stop had nobody to
// answer, the old token got a 401 and the capture was aborted without
// trailers. The plugin keeps its token fresh through cf (cf refreshes it
// at UAA and writes config.json), so the stop works after cf's death.
func TestRealCFCtrlCAfterTheTokenExpired(t *testing.T) {
	const lifetime = 8 * time.Second
	w := newRealCFWorld(t, realCFOptions{tokenLifetime: lifetime})
	before := configToken(t, w.cf)
	r, out := w.captureUntilStopped(t, nil, 5)
	// Every token cf held when the capture started has expired by now.
	time.Sleep(lifetime + time.Second)
	realcf.Interrupt(t, r.cmd, syscall.SIGINT)
	if code := w.stoppedGracefully(t, r, out, 5); code != 130 {
		t.Fatalf("cf exit %d, want 130", code)
	}
	if configToken(t, w.cf) == before {
		t.Fatal("cf never refreshed the token during the capture")
	}
}

// configToken is the access token in cf's config.json.
func configToken(t *testing.T, cf *realcf.CF) string {
	t.Helper()
	data, err := os.ReadFile(cf.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"AccessToken": "([^"]*)"`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no AccessToken in %s", data)
	}
	return string(m[1])
}

// Bug (issue 16, 6): cf writes its HTTP trace (of the token refreshes it
// makes for the plugin) to the stdout it shares with the plugin, so -o -
// gave a corrupt pcap. The plugin refuses -o - while the trace goes to
// stdout, and captures to stdout while it goes to a file.
func TestRealCFTraceAndStdout(t *testing.T) {
	// Short-lived tokens: cf refreshes, and traces, during the capture.
	w := newRealCFWorld(t, realCFOptions{tokenLifetime: 6 * time.Second})
	refused := func(t *testing.T, env []string, want string, args ...string) {
		t.Helper()
		before := w.f.cc.Requests(fakecc.ListApps)
		r := w.start(t, env, nil, append([]string{"pcap"}, args...)...)
		if code := r.ended(t); code != 1 {
			t.Fatalf("cf exit %d, want 1:\n%s", code, r.stderr.String())
		}
		msg := r.stderr.String()
		if !strings.Contains(msg, "-o - writes the capture to stdout") || !strings.Contains(msg, want) || !strings.Contains(msg, "-o FILE") {
			t.Fatalf("stderr %q, want the refusal naming %q", msg, want)
		}
		if n := w.f.cc.Requests(fakecc.ListApps) - before; n != 0 {
			t.Fatalf("the plugin looked the app up %d times before refusing", n)
		}
	}
	t.Run("CF_TRACE=true", func(t *testing.T) {
		refused(t, []string{"CF_TRACE=true"}, "CF_TRACE=true", appName, "-o", "-")
	})
	t.Run("cf pcap -v", func(t *testing.T) {
		refused(t, nil, "-v", appName, "-v", "-o", "-")
	})
	t.Run("cf config --trace true", func(t *testing.T) {
		w.cf.Run("config", "--trace", "true")
		defer w.cf.Run("config", "--trace", "false")
		refused(t, nil, "Trace true", appName, "-o", "-")
	})
	t.Run("CF_TRACE to a file", func(t *testing.T) {
		trace := filepath.Join(t.TempDir(), "cf-trace.log")
		stdin, read := tsharkReading(t)
		r := w.start(t, []string{"CF_TRACE=" + trace}, stdin, "pcap", appName, "-i", "0", "-f", "udp", "--duration", "8s", "-o", "-")
		stdin.Close()
		r.wait(t, `^Capturing app my-app`)
		w.app.send(t, "cf-trace", 6)
		if code := r.ended(t); code != 0 {
			t.Fatalf("cf exit %d:\n%s", code, r.stderr.String())
		}
		if rows := read(); len(rows) != 6 {
			t.Fatalf("tshark read %d packets from cf's stdout", len(rows))
		}
		data, err := os.ReadFile(trace)
		if err != nil || !strings.Contains(string(data), "REQUEST:") || !strings.Contains(string(data), "/oauth/token") {
			t.Fatalf("cf traced no token refresh to %s during the capture: %v\n%s", trace, err, data)
		}
	})
}

// Bug (issue 16, 5): Ctrl-C at a terminal while the stop is slow: cf is
// gone, a second Ctrl-C reaches the shell, and the plugin waited without
// bound. The graceful stop is bounded: the plugin aborts, keeps a valid
// file and says that the stop did not finish and what that means. The
// agent is frozen, so the stop cannot finish.
func TestRealCFSlowStopIsBounded(t *testing.T) {
	w := newRealCFWorld(t, realCFOptions{agentProcess: true})
	sh := w.cf.Shell(t, "PCAP_STOP_TIMEOUT=3s")
	out := filepath.Join(t.TempDir(), "slow.pcap")
	sh.Type("cf pcap my-app -i 0 -f udp --duration 1m -o " + out + "\n")
	sh.Expect(regexp.MustCompile(`Capturing app my-app`), 30*time.Second)
	w.app.send(t, "cf-slow", 4)
	sh.Expect(regexp.MustCompile(`4 packets .* dropped`), 30*time.Second)
	pid := w.pluginPID(t)
	if err := w.agent.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.agent.Process.Signal(syscall.SIGCONT) }()
	sh.CtrlC()
	sh.Expect(regexp.MustCompile(regexp.QuoteMeta(realcf.Prompt)), 10*time.Second)
	sh.CtrlC() // the user's second Ctrl-C: the shell's, not the plugin's
	sh.Expect(regexp.MustCompile(`the stop did not finish within 3s: stopping at once`), 30*time.Second)
	summary := sh.Expect(regexp.MustCompile(`\d+ packets, .* written to [^\n]*`), 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := realcf.WaitExit(ctx, pid); err != nil {
		t.Fatalf("plugin: %v\n%s", err, sh.Screen())
	}
	if !strings.Contains(summary, "4 packets") || !strings.Contains(summary, "dropped: ?") {
		t.Fatalf("summary %q:\n%s", summary, sh.Screen())
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 4 {
		t.Fatalf("%d packets in the file", len(rows))
	}
}
