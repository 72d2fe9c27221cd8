package cfplugin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
)

// The test plugin is built once per test binary, on first use.
var testPlugin struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	if watchHelper() {
		return
	}
	code := m.Run()
	if testPlugin.dir != "" {
		os.RemoveAll(testPlugin.dir)
	}
	os.Exit(code)
}

func pluginBinary(t *testing.T) string {
	t.Helper()
	testPlugin.once.Do(func() {
		testPlugin.dir, testPlugin.err = os.MkdirTemp("", "cfplugin-test-")
		if testPlugin.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		testPlugin.bin, testPlugin.err = fakecf.Build(ctx, "./testdata/testplugin", testPlugin.dir)
	})
	if testPlugin.err != nil {
		t.Fatalf("build test plugin: %v", testPlugin.err)
	}
	return testPlugin.bin
}

func installed(t *testing.T, state fakecf.State) (*fakecf.CLI, string) {
	t.Helper()
	bin := pluginBinary(t)
	cli := startFake(t, state)
	if _, err := cli.InstallPlugin(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
	cli.ResetCalls()
	return cli, bin
}

func TestBinarySendMetadataRoundTrip(t *testing.T) {
	bin := pluginBinary(t)
	cli := startFake(t, fakecf.State{})

	meta, err := cli.InstallPlugin(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	want := cfplugin.PluginMetadata{
		Name:           "pcap-test",
		Version:        cfplugin.VersionType{Major: 1, Minor: 2, Build: 3},
		LibraryVersion: cfplugin.VersionType{Major: 1},
		Commands: []cfplugin.Command{{
			Name:     "pcap",
			Alias:    "tcpdump",
			HelpText: "Capture packets of an app",
			UsageDetails: cfplugin.Usage{
				Usage:   "cf pcap APP [-o FILE] [-i 0,1]",
				Options: map[string]string{"o": "output file", "instance": "instance indexes"},
			},
		}},
	}
	if !reflect.DeepEqual(meta, want) {
		t.Errorf("metadata = %+v\nwant       %+v", meta, want)
	}
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := cli.RPCs(), []string{"SetPluginMetadata"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := cli.CallCount(fakecf.PingMethod); n != 1 {
		t.Errorf("pings = %d, want 1", n)
	}
}

func TestBinaryInstallRefusesClashWithOtherPlugin(t *testing.T) {
	bin := pluginBinary(t)
	cli := startFake(t, fakecf.State{})
	if _, err := cli.InstallPlugin(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
	// Reinstalling the same plugin may keep its names.
	if _, err := cli.InstallPlugin(t.Context(), bin); err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	cli.SetEnv([]string{"TESTPLUGIN_NAME=other-pcap"})
	_, err := cli.InstallPlugin(t.Context(), bin)
	if err == nil {
		t.Fatal("second plugin with the same commands was installed")
	}
	for _, part := range []string{"command names already in use: pcap", "command aliases already in use: tcpdump"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}

func TestBinaryRunsCommandThroughAlias(t *testing.T) {
	cli, bin := installed(t, loggedInState)

	res, err := cli.RunCommand(t.Context(), bin, "tcpdump", "info")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit %d, stderr %q", res.ExitCode, res.Stderr)
	}
	want := strings.Join([]string{
		"logged_in=true",
		"api=https://api.sys.example.com",
		"ssl_disabled=true",
		"has_space=true",
		"space_guid=space-guid-1",
		"space_name=dev",
		"org_guid=org-guid-1",
		"org_name=acme",
		"username=alice",
		"user_guid=user-guid-1",
	}, "\n") + "\n"
	if res.Stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", res.Stdout, want)
	}
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	if n := cli.CallCount(fakecf.PingMethod); n != 1 {
		t.Errorf("pings = %d, want 1", n)
	}
	wantRPCs := []string{"IsLoggedIn", "ApiEndpoint", "IsSSLDisabled", "HasSpace", "GetCurrentSpace", "GetCurrentOrg", "Username", "UserGuid"}
	if got := cli.RPCs(); !reflect.DeepEqual(got, wantRPCs) {
		t.Errorf("calls = %q, want %q", got, wantRPCs)
	}
	methods := cli.Methods()
	if cli.CallCount("GetApp")+cli.CallCount("GetApps") != 0 {
		t.Error("the plugin used the CC v2 getters")
	}
	// One TCP connection for the ping and one per RPC.
	if got, want := cli.Connections(), len(methods); got < want {
		t.Errorf("connections = %d, want at least %d", got, want)
	}
}

func TestBinaryArgsArriveUnchanged(t *testing.T) {
	cli, bin := installed(t, loggedInState)
	args := []string{"args", "my app", "-f", "tcp port 8080", "--", ""}
	res, err := cli.RunCommand(t.Context(), bin, "pcap", args...)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v, %+v", err, res)
	}
	want := strings.Join(append([]string{"pcap"}, args...), "\n") + "\n"
	if res.Stdout != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
}

func TestBinaryAccessTokenRefreshSequence(t *testing.T) {
	state := loggedInState
	state.TokenType = "Bearer"
	state.AccessTokens = []string{"eyJ.old.sig", "eyJ.fresh.sig"}
	cli, bin := installed(t, state)

	res, err := cli.RunCommand(t.Context(), bin, "pcap", "token", "2")
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v, %+v", err, res)
	}
	if want := "eyJ.old.sig\neyJ.fresh.sig\n"; res.Stdout != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
}

func TestBinaryAccessTokenFailure(t *testing.T) {
	state := loggedInState
	state.AccessTokenError = "Invalid refresh token (expired)"
	cli, bin := installed(t, state)

	res, err := cli.RunCommand(t.Context(), bin, "pcap", "token", "1")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 1 {
		t.Errorf("exit %d, want 1", res.ExitCode)
	}
	for _, part := range []string{"could not provide an access token", "cf login", "Invalid refresh token (expired)"} {
		if !strings.Contains(res.Stderr, part) {
			t.Errorf("stderr %q lacks %q", res.Stderr, part)
		}
	}
}

func TestBinaryExitCode(t *testing.T) {
	cli, bin := installed(t, loggedInState)
	res, err := cli.RunCommand(t.Context(), bin, "pcap", "fail")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stderr != "fail requested\n" || res.CFExitCode() != 1 {
		t.Errorf("exit %d (cf: %d) stderr %q", res.ExitCode, res.CFExitCode(), res.Stderr)
	}
}

func TestBinaryMinCliVersion(t *testing.T) {
	bin := pluginBinary(t)
	cli, err := fakecf.Start(t.Context(), fakecf.Options{
		State: fakecf.State{CLIVersion: "8.9.0"},
		Env:   []string{"TESTPLUGIN_MIN_CLI=99.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.InstallPlugin(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
	res, err := cli.RunCommand(t.Context(), bin, "pcap", "info")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "99.0.0 or later") || res.Stdout != "" {
		t.Errorf("%+v", res)
	}
	if cli.CallCount("IsLoggedIn") != 0 {
		t.Error("the command ran on a too old cf CLI")
	}
}

func TestBinaryUninstall(t *testing.T) {
	cli, bin := installed(t, loggedInState)
	connsBefore := cli.Connections()
	res, err := cli.UninstallPlugin(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Stdout != "" || res.Stderr != "" {
		t.Errorf("%+v", res)
	}
	if n := cli.Connections() - connsBefore; n != 0 {
		t.Errorf("uninstall opened %d connections", n)
	}
}

func TestBinaryStandaloneWithoutPort(t *testing.T) {
	bin := pluginBinary(t)
	out, err := exec.CommandContext(t.Context(), bin, "pcap", "my-app").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "standalone\npcap\nmy-app\n"; string(out) != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}

func TestBinaryPingRetriesThenFails(t *testing.T) {
	bin := pluginBinary(t)
	port := deadPort(t)
	cmd := exec.CommandContext(t.Context(), bin, strconv.Itoa(port), "pcap", "info")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)

	exitErr, ok := err.(*exec.ExitError)
	if !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit 1", err)
	}
	wantMsg := fmt.Sprintf("ping cf CLI at 127.0.0.1:%d: no answer after 5 tries", port)
	if !strings.Contains(stderr.String(), wantMsg) {
		t.Errorf("stderr %q lacks %q", stderr.String(), wantMsg)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}
	if elapsed < 750*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("gave up after %v, want about 1 s", elapsed)
	}
}
