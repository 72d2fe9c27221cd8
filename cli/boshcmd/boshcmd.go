// Package boshcmd is the `bosh` command of pcap-server-cli: a capture of
// VMs of a BOSH deployment, for operators, with the bosh CLI's login and
// conventions (-e, -d, instance slugs), streamed, summarized and stopped
// exactly as the `pcap` command's captures of apps.
package boshcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapcmd"
)

// Options are the parsed command line of `bosh ...`.
type Options struct {
	Environment string
	Deployment  string
	// Instances are slugs: GROUP, GROUP/INDEX or GROUP/ID.
	Instances         []string
	Output            string
	Filter            string
	Devices           []string
	Snaplen           int
	Duration          time.Duration
	Count             uint64
	Format            string
	APIURL            string
	Force             bool
	SkipSSLValidation bool
	// StopTimeout bounds a graceful stop ($PCAP_STOP_TIMEOUT), as for
	// the pcap command.
	StopTimeout time.Duration
}

// Flags describes every option, for the usage text.
var Flags = []pcapcmd.FlagSpec{
	spec("environment", "e", "ENV", "the director: an alias or URL of the bosh CLI's config (default $BOSH_ENVIRONMENT)"),
	spec("deployment", "d", "NAME", "the deployment (default $BOSH_DEPLOYMENT)"),
	spec("device", "", "DEVICES", "network interfaces of the VMs, comma-separated, at most 4 (default eth0)"),
	spec("filter", "f", "FILTER", "BPF filter, as for tcpdump, for example 'tcp port 443'"),
	spec("snaplen", "s", "BYTES", "bytes to keep of each packet (default 65535)"),
	spec("duration", "", "DURATION", "stop after this long, for example 30s or 5m (default and maximum set by the operator)"),
	spec("count", "c", "N", "stop after N packets"),
	spec("output", "o", "FILE", "write the capture to FILE (- for stdout, to pipe into wireshark -k -i -); default DEPLOYMENT.pcap or DEPLOYMENT.pcapng"),
	spec("format", "", "FORMAT", "pcap or pcapng (default pcap for one instance and device, pcapng with an interface per instance and device, GROUP/INDEX/DEVICE, for several)"),
	spec("api-url", "", "URL", "pcap-server API URL, required (or $PCAP_API_URL)"),
	spec("force", "", "", "overwrite the output file if it exists"),
	spec("skip-ssl-validation", "", "", "do not verify the API's TLS certificate"),
}

func spec(long, short, arg, usage string) pcapcmd.FlagSpec {
	return pcapcmd.FlagSpec{Long: long, Short: short, Arg: arg, Usage: usage}
}

// slugPattern is an instance as the bosh CLI names one.
var slugPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9][A-Za-z0-9-]{0,127})?$`)

// Parse parses args (after the command name); flags and instances may
// come in any order. -h and --help give flag.ErrHelp.
func Parse(args []string, getenv func(string) string) (Options, error) {
	o := Options{Snaplen: 65535, Environment: getenv("BOSH_ENVIRONMENT"), Deployment: getenv("BOSH_DEPLOYMENT")}
	fs := flag.NewFlagSet("bosh", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	devices := "eth0"
	str := func(p *string, long, short string) { pcapcmd.StringFlag(fs, p, long, short) }
	str(&o.Environment, "environment", "e")
	str(&o.Deployment, "deployment", "d")
	str(&devices, "device", "")
	str(&o.Filter, "filter", "f")
	str(&o.Output, "output", "o")
	str(&o.Format, "format", "")
	str(&o.APIURL, "api-url", "")
	fs.IntVar(&o.Snaplen, "snaplen", o.Snaplen, "")
	fs.IntVar(&o.Snaplen, "s", o.Snaplen, "")
	fs.DurationVar(&o.Duration, "duration", 0, "")
	fs.Uint64Var(&o.Count, "count", 0, "")
	fs.Uint64Var(&o.Count, "c", 0, "")
	fs.BoolVar(&o.Force, "force", false, "")
	fs.BoolVar(&o.SkipSSLValidation, "skip-ssl-validation", false, "")
	var err error
	if o.Instances, err = pcapcmd.ParseInterleaved(fs, args); err != nil {
		return Options{}, err
	}
	usage := func(format string, a ...any) (Options, error) {
		return Options{}, &pcapcmd.UsageError{Msg: fmt.Sprintf(format, a...)}
	}
	switch {
	case o.Environment == "":
		return usage("no environment: pass -e ALIAS or set BOSH_ENVIRONMENT")
	case o.Deployment == "":
		return usage("no deployment: pass -d NAME or set BOSH_DEPLOYMENT")
	case len(o.Instances) == 0:
		return usage("name the instances to capture: GROUP, GROUP/INDEX or GROUP/ID (router/0)")
	}
	for _, s := range o.Instances {
		if !slugPattern.MatchString(s) {
			return usage("%q is not an instance: want GROUP, GROUP/INDEX or GROUP/ID", s)
		}
	}
	o.Instances = distinct(o.Instances)
	if o.Devices, err = pcapcmd.ParseDevices(devices); err != nil {
		return Options{}, err
	}
	if err := pcapcmd.CheckFormat(o.Format, len(o.Devices)); err != nil {
		return Options{}, err
	}
	if o.Format == "" {
		o.Format = "pcapng"
		if len(o.Instances) == 1 && strings.Contains(o.Instances[0], "/") && len(o.Devices) == 1 {
			o.Format = "pcap"
		}
	}
	switch {
	case o.Snaplen < 1:
		return usage("--snaplen must be positive")
	case o.Duration < 0:
		return usage("--duration must be positive")
	}
	if o.APIURL == "" {
		o.APIURL = getenv("PCAP_API_URL")
	}
	if o.StopTimeout, err = pcapcmd.StopTimeoutFromEnv(getenv); err != nil {
		return Options{}, err
	}
	if o.APIURL == "" {
		return usage("no API URL: pass --api-url https://pcap.SYSTEM_DOMAIN (or the API's own address) or set PCAP_API_URL")
	}
	if o.Output == "" {
		o.Output = o.Deployment + "." + o.Format
	}
	return o, nil
}

// Capture is the request for the API: GET
// /v1/bosh/deployments/{deployment}/capture with the instances and
// options, and the DELETE that stops it.
func Capture(o Options) (pcapcmd.Capture, error) {
	base, err := pcapcmd.APIBase(o.APIURL)
	if err != nil {
		return pcapcmd.Capture{}, err
	}
	q := pcapcmd.Query(o.Filter, o.Devices, o.Snaplen, o.Format, o.Duration, o.Count)
	q["instance"] = o.Instances
	path := base.Path + "/v1/bosh/deployments/" + url.PathEscape(o.Deployment) + "/capture"
	capture := *base
	capture.Path, capture.RawQuery = path, q.Encode()
	return pcapcmd.Capture{
		URL: capture.String(),
		StopURL: func(captureID string) string {
			stop := *base
			stop.Path = path + "/" + url.PathEscape(captureID)
			return stop.String()
		},
		Subject:     "deployment " + o.Deployment,
		Output:      o.Output,
		Force:       o.Force,
		Devices:     len(o.Devices),
		StopTimeout: o.StopTimeout,
	}, nil
}

// Run captures with tokens from the bosh login and returns the exit code.
func Run(ctx context.Context, o Options, tokens pcapcmd.Tokens, env pcapcmd.Env) int {
	c, err := Capture(o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "bosh: %v\n", err)
		return pcapcmd.ExitUsage
	}
	env.TLSInsecure = env.TLSInsecure || o.SkipSSLValidation
	return pcapcmd.Stream(ctx, "bosh", c, tokens, env)
}

// Usage writes the command's usage.
func Usage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s bosh -e ENV -d DEPLOYMENT GROUP[/INDEX|/ID]... [options]\n\n", prog)
	fmt.Fprintf(w, "Capture the network traffic of BOSH VMs into a pcap file, with the bosh CLI's login\n")
	fmt.Fprintf(w, "(~/.bosh/config, or BOSH_CLIENT and BOSH_CLIENT_SECRET; BOSH_CA_CERT).\n\nOptions:\n")
	pcapcmd.PrintFlags(w, Flags)
}

// distinct keeps the first of each slug.
func distinct(slugs []string) []string {
	var out []string
	for _, s := range slugs {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
