package fakecf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

// Result is how a plugin process ended.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// CFExitCode is what `cf COMMAND` itself would return for this run: the
// real cf CLI (9) exits 0 when the plugin did, and 1 whatever other
// status the plugin exited with.
func (r Result) CFExitCode() int {
	if r.ExitCode == 0 {
		return 0
	}
	return 1
}

// waitDelay bounds how long a finished or killed plugin may hold its output
// pipes open through a child process.
const waitDelay = 5 * time.Second

// Command prepares `bin PORT args...` with the cf CLI's port and the extra
// environment, for tests that need their own stdin, a terminal or signals.
// The caller starts and waits for it.
func (c *CLI) Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	argv := append([]string{strconv.Itoa(c.Port())}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	c.mu.Lock()
	cmd.Env = append(os.Environ(), c.env...)
	c.mu.Unlock()
	cmd.WaitDelay = waitDelay
	return cmd
}

// Exec starts `bin PORT args...` as the cf CLI does, with stdin empty and
// stdout and stderr captured, and waits for it. A plugin that ran and exited
// non-zero is a Result, not an error; an error means it could not run.
func (c *CLI) Exec(ctx context.Context, bin string, args ...string) (Result, error) {
	cmd := c.Command(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, fmt.Errorf("run plugin %s %v: %w", bin, args, err)
	}
	c.log.Debug("fake cf CLI: plugin exited", "bin", bin, "args", args, "exit_code", res.ExitCode)
	return res, nil
}

// InstallPlugin does what `cf install-plugin` does with a binary: runs
// `bin PORT SendMetadata`, requires exit 0 and a SetPluginMetadata call, and
// validates the metadata against cf's core commands and the other installed
// plugins. The plugin then counts as installed for RunCommand.
func (c *CLI) InstallPlugin(ctx context.Context, bin string) (cfplugin.PluginMetadata, error) {
	c.mu.Lock()
	c.metadata = nil
	c.mu.Unlock()

	res, err := c.Exec(ctx, bin, cfplugin.ArgSendMetadata)
	if err != nil {
		return cfplugin.PluginMetadata{}, fmt.Errorf("install plugin: %w", err)
	}
	if res.ExitCode != 0 {
		return cfplugin.PluginMetadata{}, fmt.Errorf("install plugin: %s SendMetadata exited %d: File %s is not a valid cf CLI plugin binary (stdout %q, stderr %q)", bin, res.ExitCode, bin, res.Stdout, res.Stderr)
	}
	meta, ok := c.Metadata()
	if !ok {
		return cfplugin.PluginMetadata{}, fmt.Errorf("install plugin: %s exited 0 without calling SetPluginMetadata", bin)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	taken := CoreCommandNames()
	var others []cfplugin.PluginMetadata
	for _, p := range c.installed {
		// Reinstalling a plugin may keep its own command names.
		if p.Name == meta.Name {
			continue
		}
		others = append(others, p)
		for _, cmd := range p.Commands {
			taken = append(taken, cmd.Name)
			if cmd.Alias != "" {
				taken = append(taken, cmd.Alias)
			}
		}
	}
	if err := cfplugin.ValidateMetadata(meta, taken); err != nil {
		return meta, fmt.Errorf("install plugin %s: %w", bin, err)
	}
	c.installed = append(others, meta)
	return meta, nil
}

// RunCommand runs an installed plugin's command as `cf COMMAND ARGS...`
// would: an alias is replaced by the command's name before the plugin sees
// it.
func (c *CLI) RunCommand(ctx context.Context, bin, command string, args ...string) (Result, error) {
	name, ok := c.resolveCommand(command)
	if !ok {
		return Result{}, fmt.Errorf("run command: '%s' is not a registered command. See 'cf help -a'", command)
	}
	return c.Exec(ctx, bin, append([]string{name}, args...)...)
}

func (c *CLI) resolveCommand(command string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.installed {
		for _, cmd := range p.Commands {
			if command == cmd.Name || (cmd.Alias != "" && command == cmd.Alias) {
				return cmd.Name, true
			}
		}
	}
	return "", false
}

// UninstallPlugin runs `bin PORT CLI-MESSAGE-UNINSTALL` as
// `cf uninstall-plugin` does.
func (c *CLI) UninstallPlugin(ctx context.Context, bin string) (Result, error) {
	return c.Exec(ctx, bin, cfplugin.ArgUninstall)
}

// Build compiles the main package pkg (an import path, or a directory
// relative to the working directory) into outDir and returns the binary's
// path, for tests that run a real plugin binary.
func Build(ctx context.Context, pkg, outDir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: find the go command: %w", pkg, err)
	}
	out := filepath.Join(outDir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, pkg)
	cmd.WaitDelay = waitDelay
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, output)
	}
	return out, nil
}
