package pcapcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Options are the parsed command line of `pcap APP ...`.
type Options struct {
	App       string
	Output    string
	Instances []int // nil: every running instance
	Filter    string
	Devices   []string
	Snaplen   int
	Duration  time.Duration
	Count     uint64
	Format    string
	Process   string
	APIURL    string
	Force     bool
	// Token and AppGUID skip the cf login and the Cloud Controller lookup.
	Token   string
	AppGUID string
	// SkipSSLValidation turns TLS verification off, as `cf api
	// --skip-ssl-validation` does for the cf CLI.
	SkipSSLValidation bool
	// StopTimeout bounds a graceful stop ($PCAP_STOP_TIMEOUT); zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration
}

// FlagSpec describes a flag once for the parser and the help texts.
type FlagSpec struct {
	Long, Short, Arg, Usage string
}

// Flags lists every option: the cf plugin metadata and the standalone
// usage are generated from it. -h and -v are not among them: the cf CLI
// keeps those for itself.
var Flags = []FlagSpec{
	{"output", "o", "FILE", "write the capture to FILE (- for stdout, to pipe into wireshark -k -i -); default APP.pcap or APP.pcapng"},
	{"instance", "i", "INDEXES", "instance indexes to capture, comma-separated, or all (default all running instances)"},
	{"filter", "f", "FILTER", "BPF filter, as for tcpdump, for example 'tcp port 8080'"},
	{"device", "d", "DEVICES", "network interfaces in the container, comma-separated, at most 4 (default eth0); -d eth0,lo shows the TLS from the router on eth0 and the plaintext between envoy and the app on lo"},
	{"snaplen", "s", "BYTES", "bytes to keep of each packet (default 65535)"},
	{"duration", "", "DURATION", "stop after this long, for example 30s or 5m (default and maximum set by the operator)"},
	{"count", "c", "N", "stop after N packets"},
	{"format", "", "FORMAT", "pcap or pcapng (default pcap for one instance and device, pcapng with one interface per instance and device for several)"},
	{"process", "", "TYPE", "process type of the app (default web)"},
	{"api-url", "", "URL", "pcap-server API URL (default pcap. plus the Cloud Controller's domain; or $PCAP_API_URL)"},
	{"force", "", "", "overwrite the output file if it exists"},
	{"token", "", "TOKEN", "use this access token instead of the cf login (or $PCAP_TOKEN)"},
	{"app-guid", "", "GUID", "capture the app with this GUID, skipping the lookup by name"},
	{"skip-ssl-validation", "", "", "do not verify the API's TLS certificate"},
}

// UsageLine is the synopsis shown by `cf help pcap`.
const UsageLine = "cf pcap APP [-i INDEXES] [-f FILTER] [-o FILE] [-c N] [--duration D] [-s BYTES] [-d DEVICE[,DEVICE]] [--format pcap|pcapng] [--process TYPE] [--force]"

// UsageError is a bad command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Parse parses args (after the command name). Flags and the app name may
// come in any order, as cf users are used to. -h and --help give
// flag.ErrHelp; in the cf CLI they never arrive here.
func Parse(args []string, getenv func(string) string) (Options, error) {
	o := Options{Snaplen: 65535, Process: "web"}
	fs := flag.NewFlagSet("pcap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var instances string
	devices := "eth0"
	str := func(p *string, long, short string) { StringFlag(fs, p, long, short) }
	str(&o.Output, "output", "o")
	str(&instances, "instance", "i")
	str(&o.Filter, "filter", "f")
	str(&devices, "device", "d")
	fs.IntVar(&o.Snaplen, "snaplen", o.Snaplen, "")
	fs.IntVar(&o.Snaplen, "s", o.Snaplen, "")
	fs.DurationVar(&o.Duration, "duration", 0, "")
	fs.Uint64Var(&o.Count, "count", 0, "")
	fs.Uint64Var(&o.Count, "c", 0, "")
	str(&o.Format, "format", "")
	str(&o.Process, "process", "")
	str(&o.APIURL, "api-url", "")
	fs.BoolVar(&o.Force, "force", false, "")
	str(&o.Token, "token", "")
	str(&o.AppGUID, "app-guid", "")
	fs.BoolVar(&o.SkipSSLValidation, "skip-ssl-validation", false, "")

	positional, err := ParseInterleaved(fs, args)
	if err != nil {
		return Options{}, err
	}
	switch len(positional) {
	case 0:
		return Options{}, &UsageError{Msg: "missing app name"}
	case 1:
		o.App = positional[0]
	default:
		return Options{}, &UsageError{Msg: fmt.Sprintf("one app at a time, got %s", strings.Join(positional, " "))}
	}
	if o.Instances, err = parseInstances(instances); err != nil {
		return Options{}, err
	}
	if o.Devices, err = ParseDevices(devices); err != nil {
		return Options{}, err
	}
	if err := CheckFormat(o.Format, len(o.Devices)); err != nil {
		return Options{}, err
	}
	if o.Format == "" {
		o.Format = "pcapng"
		if len(o.Instances) == 1 && len(o.Devices) == 1 {
			o.Format = "pcap"
		}
	}
	if o.Snaplen < 1 {
		return Options{}, &UsageError{Msg: "--snaplen must be positive"}
	}
	if o.Duration < 0 {
		return Options{}, &UsageError{Msg: "--duration must be positive"}
	}
	if o.APIURL == "" {
		o.APIURL = getenv("PCAP_API_URL")
	}
	if o.Token == "" {
		o.Token = getenv("PCAP_TOKEN")
	}
	if o.StopTimeout, err = StopTimeoutFromEnv(getenv); err != nil {
		return Options{}, err
	}
	if o.Output == "" {
		o.Output = o.App + "." + o.Format
	}
	return o, nil
}

// StringFlag defines --long (and -short, unless empty) on fs, both
// setting p, whose value is the default.
func StringFlag(fs *flag.FlagSet, p *string, long, short string) {
	fs.StringVar(p, long, *p, "")
	if short != "" {
		fs.StringVar(p, short, *p, "")
	}
}

// StopTimeoutFromEnv reads $PCAP_STOP_TIMEOUT, the bound of a graceful
// stop; zero when unset.
func StopTimeoutFromEnv(getenv func(string) string) (time.Duration, error) {
	v := getenv("PCAP_STOP_TIMEOUT")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, &UsageError{Msg: fmt.Sprintf("PCAP_STOP_TIMEOUT=%q: want a positive duration such as 30s", v)}
	}
	return d, nil
}

// ParseInterleaved parses flags and positional arguments in any order,
// as cf users are used to, and returns the positional ones. -h and --help
// give flag.ErrHelp; other errors are *UsageError.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &UsageError{Msg: err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// CheckFormat checks --format: pcap or pcapng, or empty (the default),
// and pcapng for several devices.
func CheckFormat(format string, devices int) error {
	switch format {
	case "", "pcap", "pcapng":
	default:
		return &UsageError{Msg: fmt.Sprintf("--format %q: want pcap or pcapng", format)}
	}
	if format == "pcap" && devices > 1 {
		return &UsageError{Msg: "--format pcap holds one device: use pcapng for several"}
	}
	return nil
}

func parseInstances(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || i < 0 {
			return nil, &UsageError{Msg: fmt.Sprintf("--instance %q: want indexes such as 0,2 or all", s)}
		}
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ParseDevices splits eth0,lo into distinct interface names.
func ParseDevices(s string) ([]string, error) {
	var out []string
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if !wire.ValidDevice(d) {
			return nil, &UsageError{Msg: fmt.Sprintf("--device %q: %q is not a network interface name", s, d)}
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) > wire.MaxDevices {
		return nil, &UsageError{Msg: fmt.Sprintf("--device %q: at most %d devices", s, wire.MaxDevices)}
	}
	return out, nil
}

// Usage writes the standalone usage.
func Usage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s pcap APP [options]\n\nCapture the network traffic of a Cloud Foundry app's instances into a pcap file.\n\nOptions:\n", prog)
	PrintFlags(w, Flags)
}

// PrintFlags lists flags for a usage text.
func PrintFlags(w io.Writer, flags []FlagSpec) {
	for _, f := range flags {
		name := "--" + f.Long
		if f.Short != "" {
			name = "-" + f.Short + ", " + name
		}
		if f.Arg != "" {
			name += " " + f.Arg
		}
		fmt.Fprintf(w, "  %-28s %s\n", name, f.Usage)
	}
}
