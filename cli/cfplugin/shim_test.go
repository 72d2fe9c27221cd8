package cfplugin_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/test/fakecf"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want cfplugin.Invocation
	}{
		{[]string{"bin"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{}}},
		{[]string{"bin", "pcap", "my-app"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{"pcap", "my-app"}}},
		{[]string{"bin", "+8080", "pcap"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{"+8080", "pcap"}}},
		{[]string{"bin", "0", "pcap"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{"0", "pcap"}}},
		{[]string{"bin", "65536", "pcap"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{"65536", "pcap"}}},
		{[]string{"bin", "", "pcap"}, cfplugin.Invocation{Mode: cfplugin.ModeStandalone, Args: []string{"", "pcap"}}},
		{[]string{"bin", "40123", "SendMetadata"}, cfplugin.Invocation{Mode: cfplugin.ModeSendMetadata, Port: 40123, Args: []string{}}},
		// SendMetadata only counts with exactly three arguments.
		{[]string{"bin", "40123", "SendMetadata", "x"}, cfplugin.Invocation{Mode: cfplugin.ModeCommand, Port: 40123, Args: []string{"SendMetadata", "x"}}},
		{[]string{"bin", "40123", "CLI-MESSAGE-UNINSTALL"}, cfplugin.Invocation{Mode: cfplugin.ModeUninstall, Port: 40123, Args: []string{"CLI-MESSAGE-UNINSTALL"}}},
		{[]string{"bin", "40123", "pcap", "my-app", "-o", "x.pcap"}, cfplugin.Invocation{Mode: cfplugin.ModeCommand, Port: 40123, Args: []string{"pcap", "my-app", "-o", "x.pcap"}}},
		{[]string{"bin", "40123"}, cfplugin.Invocation{Mode: cfplugin.ModeCommand, Port: 40123, Args: []string{}}},
	} {
		if got := cfplugin.Classify(tc.argv); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Classify(%q) = %+v, want %+v", tc.argv, got, tc.want)
		}
	}
}

// recorder is a Plugin whose functions record how they were called.
type recorder struct {
	stderr         bytes.Buffer
	runArgs        []string
	runCalled      bool
	standaloneArgs []string
	standaloneRan  bool
	runErr         error
	// runHook lets a test use the connection inside Run.
	runHook func(ctx context.Context, conn *cfplugin.Connection) error
}

func (r *recorder) plugin(meta cfplugin.PluginMetadata) cfplugin.Plugin {
	return cfplugin.Plugin{
		Metadata: meta,
		Run: func(ctx context.Context, conn *cfplugin.Connection, args []string) error {
			r.runCalled = true
			r.runArgs = args
			if r.runHook != nil {
				if err := r.runHook(ctx, conn); err != nil {
					return err
				}
			}
			return r.runErr
		},
		Standalone: func(_ context.Context, args []string) error {
			r.standaloneRan = true
			r.standaloneArgs = args
			return nil
		},
		Stderr: &r.stderr,
	}
}

func portArg(cli *fakecf.CLI) string { return strconv.Itoa(cli.Port()) }

func TestMainSendMetadata(t *testing.T) {
	cli := startFake(t, fakecf.State{})
	var r recorder
	meta := testMetadata()

	code := r.plugin(meta).Main(t.Context(), []string{"bin", portArg(cli), "SendMetadata"})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, r.stderr.String())
	}
	if r.runCalled || r.standaloneRan {
		t.Error("SendMetadata ran a command")
	}
	got, ok := cli.Metadata()
	if !ok || !reflect.DeepEqual(got, meta) {
		t.Errorf("cf got %+v, want %+v", got, meta)
	}
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	// MinCliVersion is not checked when cf only asks for metadata.
	if got, want := cli.RPCs(), []string{"SetPluginMetadata"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := cli.CallCount(fakecf.PingMethod); n != 1 {
		t.Errorf("pings = %d, want 1", n)
	}
}

func TestMainSendMetadataRejected(t *testing.T) {
	cli := startFake(t, fakecf.State{RejectMetadata: true})
	var r recorder
	if code := r.plugin(testMetadata()).Main(t.Context(), []string{"bin", portArg(cli), "SendMetadata"}); code == 0 {
		t.Error("exit 0 although cf refused the metadata")
	}
}

func TestMainRunsCommandAfterPingAndVersionCheck(t *testing.T) {
	cli := startFake(t, loggedInState)
	var r recorder
	var space cfplugin.Space
	r.runHook = func(ctx context.Context, conn *cfplugin.Connection) error {
		var err error
		space, err = conn.GetCurrentSpace(ctx)
		return err
	}
	code := r.plugin(testMetadata()).Main(t.Context(), []string{"bin", portArg(cli), "pcap", "my-app", "-i", "0,1"})
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, r.stderr.String())
	}
	if want := []string{"pcap", "my-app", "-i", "0,1"}; !reflect.DeepEqual(r.runArgs, want) {
		t.Errorf("run args = %q, want %q", r.runArgs, want)
	}
	if space.Guid != "space-guid-1" {
		t.Errorf("space through the passed connection = %+v", space)
	}
	if err := cli.WaitCalls(t.Context(), fakecf.PingMethod, 1); err != nil {
		t.Fatal(err)
	}
	if n := cli.CallCount(fakecf.PingMethod); n != 1 {
		t.Errorf("pings = %d, want 1", n)
	}
	want := []string{"IsMinCliVersion", "GetCurrentSpace"}
	if got := cli.RPCs(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	for _, call := range cli.Calls() {
		if call.Method == "IsMinCliVersion" && call.Arg != "6.7.0" {
			t.Errorf("IsMinCliVersion arg = %v, want 6.7.0", call.Arg)
		}
	}
}

func TestMainSkipsVersionCheckWithoutMinimum(t *testing.T) {
	cli := startFake(t, loggedInState)
	var r recorder
	meta := testMetadata()
	meta.MinCliVersion = cfplugin.VersionType{}
	if code := r.plugin(meta).Main(t.Context(), []string{"bin", portArg(cli), "pcap"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := cli.CallCount("IsMinCliVersion"); n != 0 {
		t.Errorf("IsMinCliVersion called %d times", n)
	}
}

func TestMainRefusesTooOldCLI(t *testing.T) {
	cli := startFake(t, fakecf.State{CLIVersion: "6.53.0"})
	var r recorder
	meta := testMetadata()
	meta.MinCliVersion = cfplugin.VersionType{Major: 7, Minor: 2}
	code := r.plugin(meta).Main(t.Context(), []string{"bin", portArg(cli), "pcap"})
	if code == 0 || r.runCalled {
		t.Fatalf("exit %d, run called %v", code, r.runCalled)
	}
	if !strings.Contains(r.stderr.String(), "7.2.0 or later") {
		t.Errorf("stderr = %q", r.stderr.String())
	}
}

func TestMainUninstallExitsZeroWithoutCalls(t *testing.T) {
	cli := startFake(t, fakecf.State{})
	var r recorder
	if code := r.plugin(testMetadata()).Main(t.Context(), []string{"bin", portArg(cli), "CLI-MESSAGE-UNINSTALL"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if r.runCalled || r.standaloneRan {
		t.Error("uninstall ran a command")
	}
	cli.Close()
	if n := cli.Connections(); n != 0 {
		t.Errorf("uninstall opened %d connections", n)
	}
}

func TestMainStandalone(t *testing.T) {
	var r recorder
	code := r.plugin(testMetadata()).Main(t.Context(), []string{"bin", "pcap", "my-app", "--token", "x"})
	if code != 0 || !r.standaloneRan || r.runCalled {
		t.Fatalf("exit %d, standalone %v, run %v", code, r.standaloneRan, r.runCalled)
	}
	if want := []string{"pcap", "my-app", "--token", "x"}; !reflect.DeepEqual(r.standaloneArgs, want) {
		t.Errorf("standalone args = %q, want %q", r.standaloneArgs, want)
	}
}

func TestMainWithoutStandalone(t *testing.T) {
	var stderr bytes.Buffer
	p := cfplugin.Plugin{Metadata: testMetadata(), Stderr: &stderr}
	if code := p.Main(t.Context(), []string{"bin"}); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "not intended to be run on its own") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestMainExitCodes(t *testing.T) {
	cli := startFake(t, fakecf.State{})
	for _, tc := range []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{"nil", nil, 0, ""},
		{"plain error", errors.New("app not found"), 1, "app not found\n"},
		{"exit error", &cfplugin.ExitError{Code: 3, Err: errors.New("bad flag")}, 3, "bad flag\n"},
		{"already printed", &cfplugin.ExitError{Code: 2}, 2, ""},
		{"wrapped exit error", errors.Join(&cfplugin.ExitError{Code: 4, Err: errors.New("x")}), 4, "x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recorder{runErr: tc.err}
			meta := testMetadata()
			meta.MinCliVersion = cfplugin.VersionType{}
			code := r.plugin(meta).Main(t.Context(), []string{"bin", portArg(cli), "pcap"})
			if code != tc.wantCode || r.stderr.String() != tc.wantStderr {
				t.Errorf("exit %d stderr %q; want %d %q", code, r.stderr.String(), tc.wantCode, tc.wantStderr)
			}
		})
	}
}

func TestMainFailsWhenPingFails(t *testing.T) {
	var r recorder
	code := r.plugin(testMetadata()).Main(t.Context(), []string{"bin", strconv.Itoa(deadPort(t)), "pcap"})
	if code != 1 || r.runCalled {
		t.Fatalf("exit %d, run called %v", code, r.runCalled)
	}
	if !strings.Contains(r.stderr.String(), "ping cf CLI") {
		t.Errorf("stderr = %q", r.stderr.String())
	}
}
