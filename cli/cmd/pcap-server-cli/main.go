// Command pcap-server-cli captures the traffic of a Cloud Foundry app: as
// the cf CLI plugin `cf pcap`, or on its own with the same options; and,
// for operators, of BOSH VMs (`pcap-server-cli bosh`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cloudfoundry/pcap-server-release/cli/boshcmd"
	"github.com/cloudfoundry/pcap-server-release/cli/boshconfig"
	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/cli/cfsession"
	"github.com/cloudfoundry/pcap-server-release/cli/cftrace"
	"github.com/cloudfoundry/pcap-server-release/cli/pcapcmd"
)

func main() {
	// The first SIGINT or SIGTERM stops the capture gracefully; the second
	// aborts it. Either way the file stays valid. So does a SIGHUP (the
	// terminal went away, or the cf CLI leading its session died), unless
	// it is ignored (nohup).
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(signals, syscall.SIGHUP)
	}
	ctx, abort := context.WithCancel(context.Background())
	stop := make(chan struct{})
	go func() {
		<-signals
		close(stop)
		<-signals
		abort()
		// A third signal kills: a write into a stalled pipe may not end.
		signal.Stop(signals)
	}()
	code := cfplugin.Plugin{
		Metadata: pcapcmd.PluginMetadata(),
		Run: func(ctx context.Context, conn *cfplugin.Connection, args []string) error {
			return runPlugin(ctx, conn, args, stop)
		},
		Standalone: func(ctx context.Context, args []string) error { return runStandalone(ctx, args, stop) },
		Stderr:     os.Stderr,
	}.Main(ctx, os.Args)
	abort()
	os.Exit(code)
}

// runPlugin is `cf pcap ...`: args[0] is the command name.
func runPlugin(ctx context.Context, conn *cfplugin.Connection, args []string, stop <-chan struct{}) error {
	if len(args) == 0 {
		return &cfplugin.ExitError{Code: pcapcmd.ExitUsage, Err: errors.New("pcap: no command (see cf help pcap)")}
	}
	o, err := parse(args[1:], os.Stdout)
	if err != nil || o == nil {
		return err
	}
	if err := refuseTraceOnStdout(*o); err != nil {
		return err
	}
	sess := cfsession.Plugin{Conn: conn}
	if o.Token == "" {
		if err := sess.Check(ctx); err != nil {
			return err
		}
	}
	// The cf CLI dies on Ctrl-C and on kill; the capture then stops as
	// after Ctrl-C, with a token kept fresh while cf lived.
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	return capture(ctx, *o, sess, stop, conn.WatchCLI(watchCtx))
}

// refuseTraceOnStdout refuses -o - while the cf CLI writes its HTTP trace
// to the stdout it shares with the plugin.
func refuseTraceOnStdout(o pcapcmd.Options) error {
	if o.Output != "-" {
		return nil
	}
	var path, trace string
	if p, err := cfconfig.Path(os.Getenv); err == nil {
		path = p
		if data, err := os.ReadFile(p); err == nil {
			if cfg, err := cfconfig.Parse(data); err == nil {
				trace = cfg.Trace
			}
		}
	}
	if on, why := cftrace.ToStdout(os.Getenv, path, trace, cftrace.ParentArgs()); on {
		return &cfplugin.ExitError{Code: pcapcmd.ExitUsage, Err: fmt.Errorf(
			"pcap: -o - writes the capture to stdout, but %s: the capture would be corrupt. "+
				"Write it to a file with -o FILE, or %s", why.Cause, why.Fix)}
	}
	return nil
}

// runStandalone is `pcap-server-cli pcap ...` or `pcap-server-cli bosh ...`.
func runStandalone(ctx context.Context, args []string, stop <-chan struct{}) error {
	if len(args) > 0 && args[0] == "bosh" {
		return runBosh(ctx, args[1:], stop)
	}
	if len(args) == 0 || args[0] != "pcap" && args[0] != "tcpdump" {
		fmt.Fprintln(os.Stderr, "pcap-server-cli is a cf CLI plugin: install it with `cf install-plugin pcap-server-cli` and run `cf pcap APP`.")
		fmt.Fprintln(os.Stderr, "It also runs on its own with the same options, using the cf CLI's login (~/.cf/config.json or $CF_HOME/.cf/config.json):")
		fmt.Fprintln(os.Stderr)
		pcapcmd.Usage(os.Stderr, "pcap-server-cli")
		fmt.Fprintln(os.Stderr)
		fmt.Fprintln(os.Stderr, "Operators capture the VMs of BOSH deployments with `pcap-server-cli bosh`, using the bosh CLI's login:")
		fmt.Fprintln(os.Stderr)
		boshcmd.Usage(os.Stderr, "pcap-server-cli")
		return &cfplugin.ExitError{Code: pcapcmd.ExitUsage}
	}
	o, err := parse(args[1:], os.Stdout)
	if err != nil || o == nil {
		return err
	}
	if o.Token != "" && o.AppGUID != "" {
		// No cf login needed: at most the cf target, for the API URL.
		if o.APIURL == "" {
			if o.APIURL, err = apiURLFromCfTarget(); err != nil {
				return err
			}
		}
		return capture(ctx, *o, nil, stop, nil)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := cfconfig.LoadDefault(cfconfig.Options{Logger: log})
	if err != nil {
		return err
	}
	return capture(ctx, *o, cfsession.Standalone{Store: store}, stop, nil)
}

// runBosh is `pcap-server-cli bosh ...`: VMs of a BOSH deployment, with
// the bosh CLI's login.
func runBosh(ctx context.Context, args []string, stop <-chan struct{}) error {
	o, err := boshcmd.Parse(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		boshcmd.Usage(os.Stdout, "pcap-server-cli")
		return nil
	}
	var ue *pcapcmd.UsageError
	if errors.As(err, &ue) {
		return &cfplugin.ExitError{Code: pcapcmd.ExitUsage, Err: fmt.Errorf("bosh: %v (see pcap-server-cli bosh --help)", err)}
	}
	if err != nil {
		return err
	}
	path, err := boshconfig.Path(os.Getenv)
	if err != nil {
		return err
	}
	sess, err := boshconfig.Open(boshconfig.Options{
		Path:         path,
		Environment:  o.Environment,
		CACert:       os.Getenv("BOSH_CA_CERT"),
		Client:       os.Getenv("BOSH_CLIENT"),
		ClientSecret: os.Getenv("BOSH_CLIENT_SECRET"),
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("bosh: %w", err)
	}
	code := boshcmd.Run(ctx, o, sess, pcapcmd.Env{
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		StderrTerminal: isTerminal(os.Stderr),
		Stop:           stop,
	})
	if code != pcapcmd.ExitOK {
		return &cfplugin.ExitError{Code: code}
	}
	return nil
}

// apiURLFromCfTarget derives the API URL from the cf CLI's target alone,
// logged in or not.
func apiURLFromCfTarget() (string, error) {
	missing := errors.New("no API URL: pass --api-url or set PCAP_API_URL (or target the foundation with cf api)")
	path, err := cfconfig.Path(os.Getenv)
	if err != nil {
		return "", missing
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", missing
	}
	cfg, err := cfconfig.Parse(data)
	if err != nil || cfg.Target == "" {
		return "", missing
	}
	return cfsession.APIURL(cfg.Target)
}

// parse parses the command line; nil options mean help was printed.
func parse(args []string, stdout io.Writer) (*pcapcmd.Options, error) {
	o, err := pcapcmd.Parse(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		pcapcmd.Usage(stdout, "pcap-server-cli")
		return nil, nil
	}
	var ue *pcapcmd.UsageError
	if errors.As(err, &ue) {
		return nil, &cfplugin.ExitError{Code: pcapcmd.ExitUsage, Err: fmt.Errorf("pcap: %v (see cf help pcap)", err)}
	}
	return &o, err
}

// skipper is a session that knows whether cf skips TLS validation.
type skipper interface {
	SkipSSLValidation(ctx context.Context) (bool, error)
}

// capture runs the command; cliGone is nil when standalone.
func capture(ctx context.Context, o pcapcmd.Options, sess pcapcmd.Session, stop, cliGone <-chan struct{}) error {
	insecure := o.SkipSSLValidation
	// cf's --skip-ssl-validation covers the foundation's own domain: the
	// derived API URL, not one the user names.
	if s, ok := sess.(skipper); ok && o.APIURL == "" && !insecure {
		skip, err := s.SkipSSLValidation(ctx)
		if err != nil {
			return err
		}
		insecure = skip
	}
	code := pcapcmd.Run(ctx, o, pcapcmd.Env{
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		StderrTerminal: isTerminal(os.Stderr),
		Session:        sess,
		TLSInsecure:    insecure,
		Stop:           stop,
		CLIGone:        cliGone,
	})
	if code != pcapcmd.ExitOK {
		return &cfplugin.ExitError{Code: code}
	}
	return nil
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
