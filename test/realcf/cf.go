package realcf

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CF is a real cf CLI of a test's own: its CF_HOME in a temporary folder,
// the foundation's names resolved through a hosts file of its own, and
// the foundation's CAs trusted through SSL_CERT_FILE. Its plugins inherit
// all of it, as plugins of a user's cf do.
type CF struct {
	tb testing.TB
	// Home is CF_HOME; the cf CLI keeps .cf/config.json and .cf/plugins/
	// in it.
	Home string
	// Wrapper is an executable that runs the cf CLI as this CF: give it
	// cf's arguments. Shells started by Shell run it as "cf".
	Wrapper string
	caFile  string
}

// CFOptions say what a CF reaches and trusts.
type CFOptions struct {
	// Hosts maps the names cf and its plugins use (api.SYS, pcap.SYS) to
	// loopback addresses.
	Hosts map[string]string
	// CAFile holds every CA cf and its plugins trust (SSL_CERT_FILE).
	CAFile string
}

// Setup steps of the cf CLI take well under a second each here.
const cfCommandTimeout = time.Minute

// NewCF makes a CF. Its cf commands run in a mount namespace of their own
// whose /etc/hosts is a copy with opts.Hosts added (the machine's file is
// never touched; this needs root), and with SIGINT and SIGTERM at their
// defaults, as in a terminal's foreground job, whatever the test binary
// inherited (a script's `cmd &` starts it with SIGINT ignored). Every
// plugin process of its CF_HOME still running when the test ends is
// killed, and so is every cf command of it.
func (b *Binaries) NewCF(tb testing.TB, opts CFOptions) *CF {
	tb.Helper()
	dir := tb.TempDir()
	cf := &CF{tb: tb, Home: filepath.Join(dir, "home"), caFile: opts.CAFile}
	if err := os.Mkdir(cf.Home, 0o700); err != nil {
		tb.Fatal(err)
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		tb.Fatal(err)
	}
	hosts = append(bytes.TrimRight(hosts, "\n"), '\n')
	names := make([]string, 0, len(opts.Hosts))
	for name := range opts.Hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		hosts = fmt.Appendf(hosts, "%s %s\n", opts.Hosts[name], name)
	}
	hostsFile := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hostsFile, hosts, 0o644); err != nil {
		tb.Fatal(err)
	}
	cf.Wrapper = filepath.Join(dir, "cf")
	script := fmt.Sprintf(`#!/bin/sh
# The real cf CLI, as the test's own: CF_HOME, trusted CAs, names.
export CF_HOME=%[1]s SSL_CERT_FILE=%[2]s
exec env --default-signal=INT,TERM,QUIT,HUP unshare --mount --propagation private \
	sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' %[3]s %[4]s "$@"
`, shellQuote(cf.Home), shellQuote(opts.CAFile), shellQuote(hostsFile), shellQuote(b.CF()))
	if err := os.WriteFile(cf.Wrapper, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { KillAll(tb, cf.processes()) })
	return cf
}

// processes are the cf commands and plugins of this CF still running,
// known by their CF_HOME.
func (cf *CF) processes() []int {
	return pidsWithEnv("CF_HOME=" + cf.Home)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Env is the environment of a cf command: the test's, without what would
// change how cf or the plugin behaves (CF_*, PCAP_*, SSL_CERT_FILE), plus
// extra.
func Env(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "CF_") || strings.HasPrefix(kv, "PCAP_") || strings.HasPrefix(kv, "SSL_CERT_FILE=")
	})
	return append(env, extra...)
}

// Command prepares `cf ARGS...` with Env(extra...). The caller starts it
// and waits for it; in its own process group if it sends signals to it.
func (cf *CF) Command(ctx context.Context, extra []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cf.Wrapper, args...)
	cmd.Env = Env(extra...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs `cf ARGS...` to its end and returns its output, failing the
// test if it fails.
func (cf *CF) Run(args ...string) string {
	cf.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfCommandTimeout)
	defer cancel()
	out, err := cf.Command(ctx, nil, args...).CombinedOutput()
	if err != nil {
		cf.tb.Fatalf("cf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Login targets the foundation at apiURL, logs user in with password and
// targets org and space, as a user does.
func (cf *CF) Login(apiURL, user, password, org, space string) {
	cf.tb.Helper()
	cf.Run("api", apiURL)
	cf.Run("auth", user, password)
	// cf auth forgets the targeted org and space.
	cf.Run("target", "-o", org, "-s", space)
}

// ConfigPath is the cf CLI's config.json.
func (cf *CF) ConfigPath() string { return filepath.Join(cf.Home, ".cf", "config.json") }

// PluginPath is where `cf install-plugin` keeps the plugin named name.
func (cf *CF) PluginPath(name string) string { return filepath.Join(cf.Home, ".cf", "plugins", name) }

// PluginPIDs are the processes running a plugin binary of this CF_HOME,
// whoever their parent is now: a plugin whose cf died is an orphan.
func (cf *CF) PluginPIDs() []int {
	dir := filepath.Join(cf.Home, ".cf", "plugins") + string(filepath.Separator)
	return pidsRunning(func(exe string) bool { return strings.HasPrefix(exe, dir) })
}

// Interrupt sends sig to cmd's process group, as a terminal does on Ctrl-C
// to its foreground job; cmd must have been started with Setpgid.
func Interrupt(tb testing.TB, cmd *exec.Cmd, sig syscall.Signal) {
	tb.Helper()
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		tb.Fatalf("signal %v to process group %d: %v", sig, cmd.Process.Pid, err)
	}
}
