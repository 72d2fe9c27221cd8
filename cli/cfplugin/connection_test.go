package cfplugin_test

import (
	"context"
	"errors"
	"net"
	"net/rpc"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
)

func startFake(t *testing.T, state fakecf.State) *fakecf.CLI {
	t.Helper()
	cli, err := fakecf.Start(t.Context(), fakecf.Options{State: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// deadPort returns a loopback port nobody listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

var loggedInState = fakecf.State{
	APIEndpoint:  "https://api.sys.example.com",
	LoggedIn:     true,
	SSLDisabled:  true,
	SpaceGUID:    "space-guid-1",
	SpaceName:    "dev",
	OrgGUID:      "org-guid-1",
	OrgName:      "acme",
	Username:     "alice",
	UserGUID:     "user-guid-1",
	AccessTokens: []string{"eyJ.first.sig"},
}

func TestConnectionGetters(t *testing.T) {
	cli := startFake(t, loggedInState)
	conn := cfplugin.NewConnection(cli.Port())
	ctx := t.Context()

	loggedIn, err := conn.IsLoggedIn(ctx)
	if err != nil || !loggedIn {
		t.Errorf("IsLoggedIn = %v, %v", loggedIn, err)
	}
	api, err := conn.ApiEndpoint(ctx)
	if err != nil || api != "https://api.sys.example.com" {
		t.Errorf("ApiEndpoint = %q, %v", api, err)
	}
	ssl, err := conn.IsSSLDisabled(ctx)
	if err != nil || !ssl {
		t.Errorf("IsSSLDisabled = %v, %v", ssl, err)
	}
	hasSpace, err := conn.HasSpace(ctx)
	if err != nil || !hasSpace {
		t.Errorf("HasSpace = %v, %v", hasSpace, err)
	}
	space, err := conn.GetCurrentSpace(ctx)
	if err != nil || space.Guid != "space-guid-1" || space.Name != "dev" {
		t.Errorf("GetCurrentSpace = %+v, %v", space, err)
	}
	org, err := conn.GetCurrentOrg(ctx)
	if err != nil || org.Guid != "org-guid-1" || org.Name != "acme" {
		t.Errorf("GetCurrentOrg = %+v, %v", org, err)
	}
	user, err := conn.Username(ctx)
	if err != nil || user != "alice" {
		t.Errorf("Username = %q, %v", user, err)
	}
	guid, err := conn.UserGuid(ctx)
	if err != nil || guid != "user-guid-1" {
		t.Errorf("UserGuid = %q, %v", guid, err)
	}

	want := []string{"IsLoggedIn", "ApiEndpoint", "IsSSLDisabled", "HasSpace", "GetCurrentSpace", "GetCurrentOrg", "Username", "UserGuid"}
	if got := cli.Methods(); !reflect.DeepEqual(got, want) {
		t.Errorf("recorded methods = %q, want %q", got, want)
	}
	// The cf CLI's client opens one TCP connection per call.
	if got := cli.Connections(); got != len(want) {
		t.Errorf("connections = %d, want one per call (%d)", got, len(want))
	}
}

func TestConnectionNoSpaceTargeted(t *testing.T) {
	cli := startFake(t, fakecf.State{LoggedIn: true})
	conn := cfplugin.NewConnection(cli.Port())
	hasSpace, err := conn.HasSpace(t.Context())
	if err != nil || hasSpace {
		t.Errorf("HasSpace = %v, %v; want false", hasSpace, err)
	}
	space, err := conn.GetCurrentSpace(t.Context())
	if err != nil || space != (cfplugin.Space{}) {
		t.Errorf("GetCurrentSpace = %+v, %v; want zero", space, err)
	}
}

// gob matches fields by name and sends an embedded struct as one field
// named after its type; a flat reply type shares no field with the cf CLI's
// Space and fails to decode.
func TestSpaceNestingThroughRealGob(t *testing.T) {
	cli := startFake(t, loggedInState)

	client, err := rpc.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	type flatSpace struct {
		Guid string
		Name string
	}
	var flat flatSpace
	err = client.Call("CliRpcCmd.GetCurrentSpace", "", &flat)
	if err == nil || !strings.Contains(err.Error(), "no fields matched") {
		t.Fatalf("flat Space decoded with err %v (value %+v); want gob's \"no fields matched\"", err, flat)
	}

	client2, err := rpc.Dial("tcp", cfplugin.NewConnection(cli.Port()).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	var nested cfplugin.Space
	if err := client2.Call("CliRpcCmd.GetCurrentSpace", "", &nested); err != nil {
		t.Fatalf("nested Space: %v", err)
	}
	if nested.SpaceFields != (cfplugin.SpaceFields{Guid: "space-guid-1", Name: "dev"}) {
		t.Errorf("nested Space = %+v", nested)
	}
}

func TestAccessTokenStripsBearerAndFollowsRefresh(t *testing.T) {
	for _, tokenType := range []string{"bearer", "Bearer", "BEARER"} {
		t.Run(tokenType, func(t *testing.T) {
			state := loggedInState
			state.TokenType = tokenType
			state.AccessTokens = []string{"eyJ.first.sig", "eyJ.second.sig"}
			cli := startFake(t, state)
			conn := cfplugin.NewConnection(cli.Port())

			for i, want := range []string{"eyJ.first.sig", "eyJ.second.sig", "eyJ.second.sig"} {
				got, err := conn.AccessToken(t.Context())
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if got != want {
					t.Errorf("call %d = %q, want %q", i, got, want)
				}
			}
			if n := cli.CallCount("AccessToken"); n != 3 {
				t.Errorf("AccessToken calls = %d, want 3", n)
			}
		})
	}
}

func TestStripBearer(t *testing.T) {
	for in, want := range map[string]string{
		"bearer abc":     "abc",
		"BeArEr abc":     "abc",
		"  bearer  abc ": "abc",
		"abc":            "abc",
		"bearerabc":      "bearerabc",
		"bearer ":        "",
		"bearer":         "",
		"Bearer\tabc":    "abc",
		"":               "",
	} {
		if got := cfplugin.StripBearer(in); got != want {
			t.Errorf("StripBearer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccessTokenErrorSuggestsLogin(t *testing.T) {
	state := loggedInState
	state.AccessTokenError = "The token expired, was revoked, or the token ID is incorrect. Please log back in to re-authenticate."
	cli := startFake(t, state)

	_, err := cfplugin.NewConnection(cli.Port()).AccessToken(t.Context())
	if !errors.Is(err, cfplugin.ErrNoAccessToken) {
		t.Fatalf("err = %v, want ErrNoAccessToken", err)
	}
	for _, part := range []string{"AccessToken:", "cf login", "token expired"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}

func TestAccessTokenEmptyIsAnError(t *testing.T) {
	state := loggedInState
	state.AccessTokens = []string{""}
	cli := startFake(t, state)
	_, err := cfplugin.NewConnection(cli.Port()).AccessToken(t.Context())
	if !errors.Is(err, cfplugin.ErrNoAccessToken) {
		t.Fatalf("err = %v, want ErrNoAccessToken", err)
	}
}

func TestCallErrorsNameTheMethod(t *testing.T) {
	conn := cfplugin.NewConnection(deadPort(t))
	_, err := conn.IsLoggedIn(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "IsLoggedIn: dial cf CLI") {
		t.Errorf("err = %v, want it to start with the method name", err)
	}
	// A dial failure is not the cf CLI refusing a token.
	_, err = conn.AccessToken(t.Context())
	if err == nil || errors.Is(err, cfplugin.ErrNoAccessToken) || !strings.HasPrefix(err.Error(), "AccessToken: dial") {
		t.Errorf("AccessToken err = %v", err)
	}
}

// A cf CLI that accepts but never answers must not hang the plugin past its
// context.
func TestCallHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			accepted <- conn
		}
		close(accepted)
	}()
	defer func() {
		if conn, ok := <-accepted; ok {
			conn.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	conn := cfplugin.NewConnection(ln.Addr().(*net.TCPAddr).Port)
	start := time.Now()
	_, err = conn.Username(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("call returned after %v", elapsed)
	}
}

func TestSetPluginMetadataRoundTrip(t *testing.T) {
	cli := startFake(t, fakecf.State{})
	meta := testMetadata()
	if err := cfplugin.NewConnection(cli.Port()).SetPluginMetadata(t.Context(), meta); err != nil {
		t.Fatal(err)
	}
	got, ok := cli.Metadata()
	if !ok || !reflect.DeepEqual(got, meta) {
		t.Errorf("metadata at cf = %+v, want %+v", got, meta)
	}
}

func TestSetPluginMetadataRejected(t *testing.T) {
	cli := startFake(t, fakecf.State{RejectMetadata: true})
	err := cfplugin.NewConnection(cli.Port()).SetPluginMetadata(t.Context(), testMetadata())
	if err == nil || !strings.HasPrefix(err.Error(), "SetPluginMetadata:") {
		t.Errorf("err = %v", err)
	}
}

func TestIsMinCliVersion(t *testing.T) {
	cli := startFake(t, fakecf.State{CLIVersion: "8.9.0"})
	conn := cfplugin.NewConnection(cli.Port())
	for version, want := range map[string]bool{"6.7.0": true, "8.9.0": true, "8.9.1": false, "9.0.0": false} {
		got, err := conn.IsMinCliVersion(t.Context(), version)
		if err != nil || got != want {
			t.Errorf("IsMinCliVersion(%s) = %v, %v; want %v", version, got, err, want)
		}
	}
	if _, err := conn.IsMinCliVersion(t.Context(), "nine"); err == nil || !strings.HasPrefix(err.Error(), "IsMinCliVersion:") {
		t.Errorf("bad version: err = %v", err)
	}
}

func TestPingIsAConnectAndClose(t *testing.T) {
	cli := startFake(t, fakecf.State{})
	if err := cfplugin.NewConnection(cli.Port()).Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The fake records a ping when it sees EOF, after Ping returned.
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	if got := cli.Methods(); !reflect.DeepEqual(got, []string{fakecf.PingMethod}) {
		t.Errorf("recorded = %q, want one ping and no RPC", got)
	}
}

func TestPingGivesUpAfterFiveTries(t *testing.T) {
	conn := cfplugin.NewConnection(deadPort(t))
	start := time.Now()
	err := conn.Ping(t.Context())
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer after 5 tries") {
		t.Fatalf("err = %v", err)
	}
	// Four pauses of 200 ms between five tries.
	if elapsed < 750*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want about 0.8 s", elapsed)
	}
}

func TestPingWaitsForALateCLI(t *testing.T) {
	port := deadPort(t)
	listening := make(chan net.Listener, 1)
	timer := time.AfterFunc(300*time.Millisecond, func() {
		ln, err := net.Listen("tcp", cfplugin.NewConnection(port).Addr())
		if err != nil {
			close(listening)
			return
		}
		listening <- ln
	})
	defer timer.Stop()

	err := cfplugin.NewConnection(port).Ping(t.Context())
	ln, ok := <-listening
	if !ok {
		t.Skip("port was taken by someone else meanwhile")
	}
	defer ln.Close()
	if err != nil {
		t.Errorf("Ping = %v, want success once the cf CLI listens", err)
	}
}

func TestPingStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := cfplugin.NewConnection(deadPort(t)).Ping(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func testMetadata() cfplugin.PluginMetadata {
	return cfplugin.PluginMetadata{
		Name:           "pcap-test",
		Version:        cfplugin.VersionType{Major: 1, Minor: 2, Build: 3},
		MinCliVersion:  cfplugin.VersionType{Major: 6, Minor: 7},
		LibraryVersion: cfplugin.VersionType{Major: 1},
		Commands: []cfplugin.Command{{
			Name:     "pcap",
			Alias:    "tcpdump",
			HelpText: "Capture packets of an app",
			UsageDetails: cfplugin.Usage{
				Usage:   "cf pcap APP",
				Options: map[string]string{"o": "output file", "instance": "instance indexes"},
			},
		}},
	}
}
