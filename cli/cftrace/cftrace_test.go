package cftrace

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// What the real cf CLI 9 was seen to do, with a plugin that refreshed
// its token: REQUEST blocks on stdout, or not.
func TestToStdout(t *testing.T) {
	cases := []struct {
		name     string
		cfTrace  string
		config   string
		args     []string
		stdout   bool
		inReason string
	}{
		{"nothing", "", "", []string{"pcap", "app"}, false, ""},
		{"CF_TRACE=true", "true", "", nil, true, "CF_TRACE=true"},
		{"CF_TRACE=1", "1", "", nil, true, "CF_TRACE=1"},
		{"CF_TRACE=T", "T", "", nil, true, "CF_TRACE=T"},
		{"CF_TRACE=false", "false", "", nil, false, ""},
		{"CF_TRACE to a file", "/tmp/trace.log", "", nil, false, ""},
		{"CF_TRACE=yes is a file named yes", "yes", "", nil, false, ""},
		{"config Trace true", "", "true", nil, true, "Trace true"},
		{"CF_TRACE=false does not turn off the config's true", "false", "true", nil, true, "Trace true"},
		{"config Trace to a file", "", "/tmp/trace.log", nil, false, ""},
		{"config false, CF_TRACE true", "true", "false", nil, true, "CF_TRACE"},
		{"cf pcap -v", "", "", []string{"pcap", "-v", "app", "-o", "-"}, true, "-v"},
		{"-v anywhere", "", "", []string{"pcap", "app", "-o", "-", "-v"}, true, "-v"},
		{"-vv is not -v", "", "", []string{"pcap", "-vv"}, false, ""},
		{"--verbose is not -v", "", "", []string{"pcap", "--verbose"}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := func(k string) string {
				if k == "CF_TRACE" {
					return c.cfTrace
				}
				return ""
			}
			on, why := ToStdout(env, "/home/u/.cf/config.json", c.config, c.args)
			if on != c.stdout || !strings.Contains(why.Cause, c.inReason) || (on && why.Fix == "") {
				t.Fatalf("ToStdout = %v, %+v; want %v with %q", on, why, c.stdout, c.inReason)
			}
		})
	}
}

// ParentArgs reads the parent's arguments: the test runs itself as a
// child and compares what the child reads with its own arguments.
func TestParentArgs(t *testing.T) {
	if os.Getenv("CFTRACE_PRINT_PARENT_ARGS") == "1" {
		fmt.Print(strings.Join(ParentArgs(), "\x1f"))
		os.Exit(0)
	}
	if runtime.GOOS != "linux" {
		t.Skip("skipped: only Linux shows a parent's arguments (/proc); elsewhere ParentArgs is nil")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestParentArgs$", "--", "-v", "trailing arg")
	cmd.Env = append(os.Environ(), "CFTRACE_PRINT_PARENT_ARGS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), strings.Join(os.Args[1:], "\x1f"); got != want {
		t.Fatalf("the child read its parent's arguments as %q, want %q", got, want)
	}
}
