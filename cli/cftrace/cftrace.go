// Package cftrace tells whether the cf CLI that runs the plugin writes its
// HTTP trace to stdout. The plugin shares stdout with the cf CLI, which
// traces the requests it makes for the plugin (a token refresh) while the
// plugin runs, so a capture written to stdout would be corrupt.
package cftrace

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Why says what sends the cf CLI's trace to stdout, and how to send it
// elsewhere.
type Why struct {
	Cause string
	Fix   string
}

// ToStdout reports whether the cf CLI traces to stdout. The cf CLI (v6 to
// v9 alike, for the requests it makes on a plugin's behalf) traces to
// stdout when CF_TRACE or the Trace of its config.json reads as true for
// strconv.ParseBool (either suffices: CF_TRACE=false does not turn off a
// Trace of true), or when it was run with -v, which it takes out of the
// plugin's arguments wherever it stands. Any other value is a file to
// trace to. cfArgs are the cf CLI's arguments, nil when unknown.
func ToStdout(getenv func(string) string, configPath, configTrace string, cfArgs []string) (bool, Why) {
	if on(getenv("CF_TRACE")) {
		return true, Why{
			Cause: fmt.Sprintf("CF_TRACE=%s sends the cf CLI's HTTP trace there", getenv("CF_TRACE")),
			Fix:   "unset CF_TRACE or name a file (CF_TRACE=/tmp/cf-trace.log)",
		}
	}
	if on(configTrace) {
		return true, Why{
			Cause: fmt.Sprintf("the cf CLI's config (%s) has Trace %s, which sends its HTTP trace there", configPath, configTrace),
			Fix:   "run `cf config --trace false` or name a file (`cf config --trace /tmp/cf-trace.log`)",
		}
	}
	for _, a := range cfArgs {
		if a == "-v" {
			return true, Why{
				Cause: "cf was run with -v, which it takes for itself and which sends its HTTP trace there",
				Fix:   "leave out -v (CF_TRACE=/tmp/cf-trace.log traces to a file)",
			}
		}
	}
	return false, Why{}
}

func on(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// ParentArgs returns the arguments (without the program) of this
// process's parent, the cf CLI when run as a plugin, or nil where they
// cannot be read (only Linux has them in /proc).
func ParentArgs() []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", os.Getppid()))
	if err != nil {
		return nil
	}
	args := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
	if len(args) < 2 {
		return nil
	}
	return args[1:]
}
