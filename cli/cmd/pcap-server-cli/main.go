// Command pcap-server-cli captures the traffic of a Cloud Foundry app: as
// the cf CLI plugin `cf pcap`, or on its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapcmd"
)

func main() {
	// SIGINT and SIGTERM end the capture cleanly: the file stays valid.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runStandalone(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runStandalone(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "pcap" && args[0] != "tcpdump" {
		fmt.Fprintln(stderr, "pcap-server-cli is a cf CLI plugin: install it with `cf install-plugin pcap-server-cli` and run `cf pcap APP`.")
		fmt.Fprintln(stderr, "It also runs on its own, with the same options:")
		fmt.Fprintln(stderr)
		pcapcmd.Usage(stderr, "pcap-server-cli")
		return pcapcmd.ExitUsage
	}
	o, err := pcapcmd.Parse(args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		pcapcmd.Usage(stdout, "pcap-server-cli")
		return pcapcmd.ExitOK
	}
	if err != nil {
		var ue *pcapcmd.UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "pcap: %v\n\n", err)
			pcapcmd.Usage(stderr, "pcap-server-cli")
			return pcapcmd.ExitUsage
		}
		fmt.Fprintf(stderr, "pcap: %v\n", err)
		return pcapcmd.ExitError
	}
	return pcapcmd.Run(ctx, o, pcapcmd.Env{
		Stdout:         stdout,
		Stderr:         stderr,
		StderrTerminal: isTerminal(stderr),
		TLSInsecure:    o.SkipSSLValidation,
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
