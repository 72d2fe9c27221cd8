package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// cfWorld is a fake foundation with a real API and agent, and a fake cf
// CLI logged in as the space developer.
type cfWorld struct {
	f   *foundation
	api *apiProc
	app *app
	cf  *fakecf.CLI
	bin string
}

func newCFWorld(t *testing.T, state func(*foundation) fakecf.State) *cfWorld {
	t.Helper()
	netnstest.RequireRoot(t)
	w := &cfWorld{f: newFoundation(t), app: newApp(t), bin: binary(t, "pcap-server-cli")}
	p := newPKI(t)
	w.api = startAPI(t, p, nil, w.f.cfMode)
	w.f.running(fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "handle-0"})
	startAgent(t, p, w.api, "127.0.0.1", map[string]string{w.f.app.GUID + "/0": w.app.pair.App.Path()})
	ctx, cancel := context.WithCancel(context.Background())
	cf, err := fakecf.Start(ctx, fakecf.Options{
		State: state(w.f),
		// The CLI trusts the fakes' CAs like a system CA, and finds the
		// API by its URL: the fakes' loopback URLs have no api. to swap.
		Env: []string{"SSL_CERT_FILE=" + w.f.caBundle, "PCAP_API_URL=" + w.api.url, "PCAP_TOKEN="},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cf.Close(); cancel() })
	w.cf = cf
	return w
}

// loggedIn is the developer's login, whose token the fake cf CLI hands
// out as the real one does: cached, refreshed at UAA when it has less than
// a minute left.
func loggedIn(f *foundation) fakecf.State {
	return fakecf.State{
		APIEndpoint: f.cc.URL,
		LoggedIn:    true,
		SpaceGUID:   f.space.GUID,
		SpaceName:   f.space.Name,
		OrgName:     "org",
		Username:    f.developer,
		UserGUID:    f.developer,
		Login: &fakecf.Login{
			AccessToken:  f.uaa.UserToken(f.developer),
			RefreshToken: f.uaa.RefreshToken(f.developer),
			TokenURL:     f.uaa.URL + "/oauth/token",
			HTTPClient:   f.uaa.Client(),
		},
	}
}

// scripted is the developer's login with tokens handed out in this order
// whatever their expiry: not what the real cf CLI does, but a way to put
// an expired token exactly where a test wants it.
func scripted(f *foundation, tokens ...string) fakecf.State {
	s := loggedIn(f)
	s.Login = nil
	s.AccessTokens = tokens
	return s
}

// runPlugin runs `cf tcpdump ARGS...`, sending datagrams once the capture
// has started, and returns its stderr and exit code.
func (w *cfWorld) runPlugin(t *testing.T, send int, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.cf.InstallPlugin(ctx, w.bin); err != nil {
		t.Fatal(err)
	}
	cmd := w.cf.Command(ctx, w.bin, append([]string{"pcap"}, args...)...)
	lines, stderr := startWatchingStderr(t, cmd)
	if send > 0 {
		waitLine(t, lines, regexp.MustCompile(`^Capturing app`))
		w.app.send(t, "plugin", send)
	}
	for range lines {
	}
	return stderr.String(), exitCode(cmd.Wait())
}

func TestPluginInstallsAndCapturesThroughTheCfCLI(t *testing.T) {
	w := newCFWorld(t, loggedIn)
	meta, err := w.cf.InstallPlugin(context.Background(), w.bin)
	if err != nil {
		t.Fatal(err)
	}
	cmd := meta.Commands[0]
	if meta.Name != "pcap" || len(meta.Commands) != 1 || cmd.Name != "pcap" || cmd.Alias != "tcpdump" || meta.LibraryVersion.Major != 1 {
		t.Fatalf("metadata %+v", meta)
	}
	for _, opt := range []string{"output", "instance", "filter", "device", "snaplen", "duration", "count", "format", "process", "api-url", "force"} {
		if _, ok := cmd.UsageDetails.Options[opt]; !ok {
			t.Errorf("option %s missing from the metadata", opt)
		}
	}
	for opt := range cmd.UsageDetails.Options {
		if opt == "h" || opt == "v" || opt == "help" {
			t.Errorf("the plugin defines -%s, which the cf CLI keeps for itself", opt)
		}
	}
	if !strings.Contains(cmd.UsageDetails.Usage, "cf pcap APP") {
		t.Errorf("usage %q", cmd.UsageDetails.Usage)
	}

	out := filepath.Join(t.TempDir(), "my-app.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.cf.ResetCalls()
	// The alias, as a user types it: cf replaces it with the command name.
	res, err := runWithPackets(ctx, t, w, out)
	if err != nil || res != 0 {
		t.Fatalf("exit %d: %v", res, err)
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 5 {
		t.Fatalf("%d packets", len(rows))
	}
	methods := w.cf.Methods()
	for _, m := range []string{"IsLoggedIn", "AccessToken", "GetCurrentSpace", "ApiEndpoint"} {
		if !slices.Contains(methods, m) {
			t.Errorf("the plugin never called %s (calls: %v)", m, methods)
		}
	}
	for _, m := range methods {
		if m == "GetApp" || m == "GetApps" {
			t.Errorf("the plugin used the CC v2 getter %s", m)
		}
	}
}

func runWithPackets(ctx context.Context, t *testing.T, w *cfWorld, out string) (int, error) {
	t.Helper()
	stderr, code := w.runPlugin(t, 5, appName, "-i", "0", "-f", "udp", "-c", "5", "-o", out)
	if code != 0 {
		t.Logf("stderr: %s", stderr)
	}
	if !strings.Contains(stderr, "5 packets") {
		t.Errorf("summary missing: %s", stderr)
	}
	return code, ctx.Err()
}

// The token expires between the app lookup and the capture: the API says
// 401, the plugin asks the cf CLI for a fresh token once and goes on.
func TestPluginRetriesOnceWithAFreshToken(t *testing.T) {
	w := newCFWorld(t, func(f *foundation) fakecf.State {
		return scripted(f, f.uaa.UserToken(f.developer), f.uaa.UserToken(f.developer, fakeuaa.Expired()), f.uaa.UserToken(f.developer))
	})
	out := filepath.Join(t.TempDir(), "x.pcap")
	stderr, code := w.runPlugin(t, 3, appName, "-i", "0", "-f", "udp", "-c", "3", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := w.cf.CallCount("AccessToken"); n != 3 {
		t.Fatalf("AccessToken called %d times, want 3 (lookup, capture, retry)", n)
	}
}

// The token expires before the Cloud Controller sees it: the app lookup
// gets a 401, the plugin asks the cf CLI for a fresh token once and looks
// the app up again. A second 401 is the end: log in again.
func TestPluginRetriesTheCloudControllerOnceWithAFreshToken(t *testing.T) {
	w := newCFWorld(t, loggedIn)
	expired := w.f.uaa.UserToken(w.f.developer, fakeuaa.Expired())
	good := w.f.uaa.UserToken(w.f.developer)

	t.Run("fresh token accepted", func(t *testing.T) {
		w.cf.SetState(scripted(w.f, expired, good))
		w.cf.ResetCalls()
		before := w.f.cc.Requests(fakecc.ListApps)
		out := filepath.Join(t.TempDir(), "x.pcap")
		stderr, code := w.runPlugin(t, 3, appName, "-i", "0", "-f", "udp", "-c", "3", "-o", out)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if rows := tshark(t, out, "udp.payload"); len(rows) != 3 {
			t.Fatalf("%d packets", len(rows))
		}
		if n := w.f.cc.Requests(fakecc.ListApps) - before; n != 2 {
			t.Errorf("%d app lookups at the Cloud Controller, want 2 (rejected, retried)", n)
		}
		if n := w.cf.CallCount("AccessToken"); n != 3 {
			t.Errorf("AccessToken called %d times, want 3 (lookup, retried lookup, capture)", n)
		}
	})
	t.Run("rejected twice", func(t *testing.T) {
		w.cf.SetState(scripted(w.f, expired, expired, good))
		w.cf.ResetCalls()
		before := w.f.cc.Requests(fakecc.ListApps)
		stderr, code := w.runPlugin(t, 0, appName, "-o", filepath.Join(t.TempDir(), "x.pcap"))
		if code == 0 || !strings.Contains(stderr, "rejected the token") || !strings.Contains(stderr, "log in again") {
			t.Fatalf("exit %d, stderr %q; want the Cloud Controller's rejection and \"log in again\"", code, stderr)
		}
		if n := w.f.cc.Requests(fakecc.ListApps) - before; n != 2 {
			t.Errorf("%d app lookups at the Cloud Controller, want 2", n)
		}
		if n := w.cf.CallCount("AccessToken"); n != 2 {
			t.Errorf("AccessToken called %d times, want 2", n)
		}
	})
}

// Bug (issue 16, 3): the capture's token expired during the capture, the
// cf CLI died on Ctrl-C, and the stop, sent with the expired token, was
// refused: the capture was aborted without trailers. The plugin keeps its
// token fresh through the cf CLI while cf lives and stops with that.
func TestPluginStopsWithAKeptTokenAfterCfDied(t *testing.T) {
	const lifetime = 4 * time.Second
	w := newCFWorld(t, func(f *foundation) fakecf.State {
		f.uaa.SetAccessTokenValidity(lifetime)
		s := loggedIn(f)
		s.Login.AccessToken = f.uaa.UserToken(f.developer, fakeuaa.ExpiresAt(time.Now().Add(lifetime)))
		return s
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.cf.InstallPlugin(ctx, w.bin); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kept.pcap")
	cmd := w.cf.Command(ctx, w.bin, "pcap", appName, "-i", "0", "-f", "udp", "--duration", "1m", "-o", out)
	lines, stderr := startWatchingStderr(t, cmd)
	waitLine(t, lines, regexp.MustCompile(`^Capturing app`))
	w.app.send(t, "kept", 5)
	// Let the token the capture started with expire; then cf dies, as on
	// Ctrl-C, and the plugin gets its SIGINT.
	time.Sleep(lifetime)
	w.cf.Close()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	summary := waitLine(t, lines, regexp.MustCompile(`packets, .* written to`))
	if code := exitCode(waitCmd(t, cmd)); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(summary, "ended: stopped on request") || !strings.Contains(summary, "dropped: 0 (kernel=0 agent=0 api=0)") {
		t.Fatalf("summary %q:\n%s", summary, stderr.String())
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 5 {
		t.Fatalf("%d packets in the file", len(rows))
	}
	if n := w.cf.Refreshes(); n < 2 {
		t.Fatalf("the cf CLI refreshed %d tokens: the plugin did not keep its token fresh", n)
	}
}

func TestPluginErrors(t *testing.T) {
	cases := []struct {
		name  string
		state func(*foundation) fakecf.State
		args  []string
		want  string
	}{
		{"app not in the space", loggedIn, []string{"no-such-app"}, "app no-such-app not found in space dev"},
		{"not logged in", func(f *foundation) fakecf.State { s := loggedIn(f); s.LoggedIn = false; return s }, []string{appName}, "not logged in: run `cf login`"},
		{"no space targeted", func(f *foundation) fakecf.State { s := loggedIn(f); s.SpaceGUID, s.SpaceName = "", ""; return s }, []string{appName}, "no space targeted"},
		{"token refused by the cf CLI", func(f *foundation) fakecf.State {
			s := loggedIn(f)
			s.AccessTokenError = "The token expired, was revoked, or the token ID is incorrect. Please log back in to re-authenticate."
			return s
		}, []string{appName}, "cf login"},
		{"bad option", loggedIn, []string{appName, "--format", "json"}, "--format"},
	}
	w := newCFWorld(t, loggedIn)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.cf.SetState(c.state(w.f))
			args := append(c.args, "-o", filepath.Join(t.TempDir(), "x.pcap"))
			stderr, code := w.runPlugin(t, 0, args...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, stderr, c.want)
			}
		})
	}
	// The API's 403 for the SSH policy reaches the user with CC's reason.
	t.Run("ssh disabled for the app", func(t *testing.T) {
		w.cf.SetState(loggedIn(w.f))
		w.f.cc.SetAppEnableSSH(w.f.app.GUID, false)
		defer w.f.cc.SetAppEnableSSH(w.f.app.GUID, true)
		stderr, code := w.runPlugin(t, 0, appName, "-o", filepath.Join(t.TempDir(), "x.pcap"))
		if code == 0 || !strings.Contains(stderr, "ssh is disabled for app, and a capture needs what cf ssh needs") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("API down", func(t *testing.T) {
		w.cf.SetState(loggedIn(w.f))
		w.cf.SetEnv([]string{"SSL_CERT_FILE=" + w.f.caBundle, "PCAP_API_URL=http://127.0.0.1:1"})
		stderr, code := w.runPlugin(t, 0, appName, "-o", filepath.Join(t.TempDir(), "x.pcap"))
		if code == 0 || !strings.Contains(stderr, "cannot reach the pcap-server API at http://127.0.0.1:1") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}

// Standalone, the CLI reads the cf CLI's config.json and refreshes the
// expired token through UAA before it captures.
func TestStandaloneRefreshesTheTokenFromCfConfig(t *testing.T) {
	w := newCFWorld(t, loggedIn)
	expired := w.f.uaa.UserToken(w.f.developer, fakeuaa.Expired())
	cfgPath := w.standaloneCapture(t, expired)
	if n := w.f.uaa.Requests(fakeuaa.PostToken); n != 1 {
		t.Fatalf("%d refreshes through UAA, want 1", n)
	}
	after, _ := os.ReadFile(cfgPath)
	var saved map[string]any
	if err := json.Unmarshal(after, &saved); err != nil {
		t.Fatal(err)
	}
	if saved["AccessToken"] == "bearer "+expired || !strings.HasPrefix(saved["AccessToken"].(string), "bearer ") || saved["ColorEnabled"] != "true" {
		t.Fatalf("config after refresh: %v", saved)
	}
}

// Standalone, a token that has not expired but that the Cloud Controller
// rejects (signed by a key UAA no longer serves) is refreshed through UAA
// once, and the lookup tried again.
func TestStandaloneRefreshesATokenTheCloudControllerRejects(t *testing.T) {
	w := newCFWorld(t, loggedIn)
	retired, err := fakeuaa.NewSigningKey("retired-key")
	if err != nil {
		t.Fatal(err)
	}
	w.standaloneCapture(t, w.f.uaa.UserToken(w.f.developer, fakeuaa.SignedBy(retired)))
	if n := w.f.uaa.Requests(fakeuaa.PostToken); n != 1 {
		t.Fatalf("%d refreshes through UAA, want 1", n)
	}
	if n := w.f.cc.Requests(fakecc.ListApps); n != 2 {
		t.Fatalf("%d app lookups at the Cloud Controller, want 2 (rejected, retried)", n)
	}
}

// standaloneCapture writes a cf config.json holding accessToken and a
// valid refresh token, captures 4 datagrams with pcap-server-cli on its
// own, checks the file and returns the config's path.
func (w *cfWorld) standaloneCapture(t *testing.T, accessToken string) string {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".cf"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"ConfigVersion":         4,
		"Target":                w.f.cc.URL,
		"AuthorizationEndpoint": w.f.uaa.URL,
		"UaaEndpoint":           w.f.uaa.URL,
		"AccessToken":           "bearer " + accessToken,
		"RefreshToken":          w.f.uaa.RefreshToken(w.f.developer),
		"UAAOAuthClient":        "cf",
		"UAAOAuthClientSecret":  "",
		"SSLDisabled":           false,
		"OrganizationFields":    map[string]string{"GUID": "org-guid", "Name": "org"},
		"SpaceFields":           map[string]string{"GUID": w.f.space.GUID, "Name": w.f.space.Name},
		"ColorEnabled":          "true",
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(home, ".cf", "config.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "s.pcap")
	cmd := cliStandalone(t, "pcap", appName, "-i", "0", "-f", "udp", "-c", "4", "-o", out)
	cmd.Env = append(os.Environ(), "CF_HOME="+home, "SSL_CERT_FILE="+w.f.caBundle, "PCAP_API_URL="+w.api.url, "PCAP_TOKEN=")
	lines, stderr := startWatchingStderr(t, cmd)
	// Send once the capture has started; read to the end either way, so
	// that a refused capture fails with the CLI's message.
	timeout := time.After(time.Minute)
	sent := false
	for reading := true; reading; {
		select {
		case l, ok := <-lines:
			reading = ok
			if ok && !sent && strings.HasPrefix(l, "Capturing app") {
				w.app.send(t, "standalone", 4)
				sent = true
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("the CLI did not end within a minute: %s", stderr.String())
		}
	}
	if err := waitCmd(t, cmd); err != nil || !sent {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	if rows := tshark(t, out, "udp.payload"); len(rows) != 4 {
		t.Fatalf("%d packets", len(rows))
	}
	return cfgPath
}
