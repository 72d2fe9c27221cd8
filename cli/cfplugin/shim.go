package cfplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Arguments the cf CLI sends in place of a command name.
const (
	ArgSendMetadata = "SendMetadata"
	ArgUninstall    = "CLI-MESSAGE-UNINSTALL"
)

// Mode says why the binary was started.
type Mode int

const (
	// ModeStandalone: no cf CLI port in argv[1]; the binary runs on its own.
	ModeStandalone Mode = iota
	// ModeSendMetadata: `BIN PORT SendMetadata`, from cf install-plugin.
	ModeSendMetadata
	// ModeUninstall: `BIN PORT CLI-MESSAGE-UNINSTALL`, from cf uninstall-plugin.
	ModeUninstall
	// ModeCommand: `BIN PORT COMMAND ARGS...`, a command run through cf.
	ModeCommand
)

func (m Mode) String() string {
	switch m {
	case ModeStandalone:
		return "standalone"
	case ModeSendMetadata:
		return "send-metadata"
	case ModeUninstall:
		return "uninstall"
	case ModeCommand:
		return "command"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Invocation is argv classified the way the cf CLI's shim reads it.
type Invocation struct {
	Mode Mode
	// Port is the cf CLI's RPC port; 0 in ModeStandalone.
	Port int
	// Args are the arguments for the command function: argv[2:] in
	// ModeCommand (args[0] is the command name), argv[1:] in ModeStandalone.
	Args []string
}

// Classify reads argv (including argv[0]). argv[1] counts as a port only if
// it is a decimal number from 1 to 65535, so `BIN pcap my-app` is standalone.
func Classify(argv []string) Invocation {
	if len(argv) < 2 {
		return Invocation{Mode: ModeStandalone, Args: []string{}}
	}
	port, ok := parsePort(argv[1])
	if !ok {
		return Invocation{Mode: ModeStandalone, Args: argv[1:]}
	}
	switch {
	case len(argv) == 3 && argv[2] == ArgSendMetadata:
		return Invocation{Mode: ModeSendMetadata, Port: port, Args: []string{}}
	case len(argv) >= 3 && argv[2] == ArgUninstall:
		return Invocation{Mode: ModeUninstall, Port: port, Args: argv[2:]}
	}
	// `BIN PORT` alone reaches the command with no arguments, as in the shim.
	return Invocation{Mode: ModeCommand, Port: port, Args: argv[2:]}
}

func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return 0, false
	}
	return port, true
}

// Plugin is a cf CLI plugin binary that may also run on its own.
type Plugin struct {
	Metadata PluginMetadata
	// Run executes a command started by cf. args[0] is the command name
	// (cf has already replaced an alias by the name).
	Run func(ctx context.Context, conn *Connection, args []string) error
	// Standalone runs when argv[1] is not a cf CLI port; args is argv[1:].
	// Nil means the binary only works through cf.
	Standalone func(ctx context.Context, args []string) error
	// Stderr receives error messages; nil discards them.
	Stderr io.Writer
}

// ExitCoder is an error that chooses the process exit code. Main prints its
// message unless the message is empty.
type ExitCoder interface {
	error
	ExitCode() int
}

// ExitError is an ExitCoder. With a nil Err the message was already shown.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode implements ExitCoder.
func (e *ExitError) ExitCode() int { return e.Code }

// Main runs the plugin for argv (os.Args) and returns the exit code; it never
// exits itself. The order follows the cf CLI's shim: ping the cf CLI, answer
// SendMetadata, check MinCliVersion, then run the command.
func (p Plugin) Main(ctx context.Context, argv []string) int {
	inv := Classify(argv)
	switch inv.Mode {
	case ModeStandalone:
		if p.Standalone == nil {
			return p.fail(errors.New("this cf CLI plugin is not intended to be run on its own: install it with `cf install-plugin` and run `cf " + p.commandName() + "`"))
		}
		return p.fail(p.Standalone(ctx, inv.Args))
	case ModeUninstall:
		// Nothing is kept on disk, so there is nothing to clean up; cf waits
		// for this exit code, so answer at once without touching the port.
		return 0
	}

	conn := NewConnection(inv.Port)
	if err := conn.Ping(ctx); err != nil {
		return p.fail(err)
	}
	if inv.Mode == ModeSendMetadata {
		return p.fail(conn.SetPluginMetadata(ctx, p.Metadata))
	}
	if minVersion := p.Metadata.MinCliVersion; !minVersion.IsZero() {
		ok, err := conn.IsMinCliVersion(ctx, minVersion.String())
		if err != nil {
			return p.fail(err)
		}
		if !ok {
			return p.fail(fmt.Errorf("cf CLI version %s or later is required to run this plugin command", minVersion))
		}
	}
	if p.Run == nil {
		return p.fail(errors.New("this plugin has no commands to run"))
	}
	return p.fail(p.Run(ctx, conn, inv.Args))
}

func (p Plugin) commandName() string {
	if len(p.Metadata.Commands) > 0 {
		return p.Metadata.Commands[0].Name
	}
	return p.Metadata.Name
}

// fail prints err and turns it into an exit code.
func (p Plugin) fail(err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var coder ExitCoder
	if errors.As(err, &coder) {
		code = coder.ExitCode()
	}
	if msg := err.Error(); msg != "" && p.Stderr != nil {
		fmt.Fprintln(p.Stderr, msg)
	}
	return code
}
