// Package daemoncmd is the command line both daemons share: -config,
// -check-config (parse and validate, print every problem, exit) and
// -version, and SIGINT/SIGTERM as the signal to drain and stop.
package daemoncmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudfoundry/pcap-server-release/internal/buildinfo"
)

// Command describes one daemon.
type Command[C any] struct {
	Name          string
	DefaultConfig string
	Load          func(path string) (C, error)
	Serve         func(ctx context.Context, cfg C, logOut io.Writer) error
}

// Main runs the command with os.Args and exits.
func (c Command[C]) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := c.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Run runs the command and returns its exit code.
func (c Command[C]) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", c.DefaultConfig, "configuration file")
	checkOnly := fs.Bool("check-config", false, "validate the configuration, print what is wrong and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, buildinfo.Version())
		return 0
	}
	cfg, err := c.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *configPath)
		return 0
	}
	if err := c.Serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return 1
	}
	return 0
}
