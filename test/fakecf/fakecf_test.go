package fakecf_test

import (
	"net"
	"net/rpc"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
)

func start(t *testing.T, state fakecf.State) *fakecf.CLI {
	t.Helper()
	cli, err := fakecf.Start(t.Context(), fakecf.Options{State: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func dial(t *testing.T, cli *fakecf.CLI) *rpc.Client {
	t.Helper()
	client, err := rpc.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestCoreCommandNames(t *testing.T) {
	names := fakecf.CoreCommandNames()
	for _, want := range []string{"help", "h", "push", "p", "logs", "ssh", "app", "apps", "a", "curl", "install-plugin", "login", "l"} {
		if !slices.Contains(names, want) {
			t.Errorf("core commands lack %q", want)
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			t.Errorf("empty or duplicate core command %q", n)
		}
		seen[n] = true
	}
	for _, ours := range []string{"pcap", "tcpdump"} {
		if seen[ours] {
			t.Errorf("%q is a core command", ours)
		}
	}
	names[0] = "changed"
	if fakecf.CoreCommandNames()[0] == "changed" {
		t.Error("CoreCommandNames shares its slice")
	}
}

func TestCCv2GettersAreRecordedAndFail(t *testing.T) {
	cli := start(t, fakecf.State{LoggedIn: true})
	client := dial(t, cli)

	var app fakecf.GetAppModel
	if err := client.Call("CliRpcCmd.GetApp", "my-app", &app); err == nil || !strings.Contains(err.Error(), "CC v2") {
		t.Errorf("GetApp err = %v", err)
	}
	var apps []fakecf.GetAppsModel
	if err := client.Call("CliRpcCmd.GetApps", "", &apps); err == nil {
		t.Error("GetApps succeeded")
	}
	if cli.CallCount("GetApp") != 1 || cli.CallCount("GetApps") != 1 {
		t.Errorf("calls = %q", cli.Methods())
	}
	if arg := cli.Calls()[0].Arg; arg != "my-app" {
		t.Errorf("GetApp arg = %v", arg)
	}
}

func TestOrgCarriesQuotaLikeTheRealCLI(t *testing.T) {
	cli := start(t, fakecf.State{OrgGUID: "o-1", OrgName: "acme"})
	var org fakecf.Organization
	if err := dial(t, cli).Call("CliRpcCmd.GetCurrentOrg", "", &org); err != nil {
		t.Fatal(err)
	}
	if org.Guid != "o-1" || org.Name != "acme" {
		t.Errorf("org = %+v", org)
	}
}

func TestAccessTokenSequenceAndReset(t *testing.T) {
	cli := start(t, fakecf.State{AccessTokens: []string{"a", "b"}})
	client := dial(t, cli)
	var got []string
	for range 3 {
		var token string
		if err := client.Call("CliRpcCmd.AccessToken", "", &token); err != nil {
			t.Fatal(err)
		}
		got = append(got, token)
	}
	if want := []string{"bearer a", "bearer b", "bearer b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tokens = %q, want %q", got, want)
	}

	cli.SetState(fakecf.State{})
	var token string
	err := client.Call("CliRpcCmd.AccessToken", "", &token)
	if err == nil || !strings.Contains(err.Error(), "cf login") {
		t.Errorf("without tokens: %q, %v", token, err)
	}
}

func TestPingIsToldFromRPC(t *testing.T) {
	cli := start(t, fakecf.State{LoggedIn: true})
	conn, err := net.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	var loggedIn bool
	if err := dial(t, cli).Call("CliRpcCmd.IsLoggedIn", "", &loggedIn); err != nil || !loggedIn {
		t.Fatalf("IsLoggedIn = %v, %v", loggedIn, err)
	}
	calls := cli.Calls()
	want := []fakecf.Call{{Conn: 1, Method: fakecf.PingMethod}, {Conn: 2, Method: "IsLoggedIn", Arg: ""}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls = %+v, want %+v", calls, want)
	}
}

func TestInstallRejectsBinariesThatAreNoPlugins(t *testing.T) {
	cli := start(t, fakecf.State{})
	for bin, want := range map[string]string{
		"false": "not a valid cf CLI plugin binary",
		"true":  "without calling SetPluginMetadata",
	} {
		path, err := exec.LookPath(bin)
		if err != nil {
			t.Skipf("no %s: %v", bin, err)
		}
		if _, err := cli.InstallPlugin(t.Context(), path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", bin, err, want)
		}
	}
}

func TestRunCommandNeedsAnInstalledCommand(t *testing.T) {
	cli := start(t, fakecf.State{})
	_, err := cli.RunCommand(t.Context(), "/nonexistent", "pcap")
	if err == nil || !strings.Contains(err.Error(), "not a registered command") {
		t.Errorf("err = %v", err)
	}
}

func TestCloseEndsEveryGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cli, err := fakecf.Start(t.Context(), fakecf.Options{State: fakecf.State{LoggedIn: true}})
	if err != nil {
		t.Fatal(err)
	}
	// An idle client connection must not keep the fake alive.
	idle, err := net.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	client, err := rpc.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := client.Call("CliRpcCmd.IsLoggedIn", "", &ok); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	client.Close()
	if _, err := net.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr()); err == nil {
		t.Error("fake still accepts after Close")
	}
}
