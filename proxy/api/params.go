package api

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/bpfbound"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// captureParams are the validated query parameters of a capture request.
type captureParams struct {
	indices    []int // empty: every running instance
	process    string
	devices    []string
	filter     string
	snaplen    int
	duration   time.Duration
	maxPackets uint64
	format     capture.Format
}

// maxInstances bounds the instances one capture may name.
const maxInstances = 1000

var (
	processPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	knownParams    = []string{"instance", "process", "device", "filter", "snaplen", "duration", "packets", "format"}
)

// parseCaptureParams validates the query against the limits; a duration
// above the maximum is capped, everything else out of range is a 400 that
// says what is wrong.
func parseCaptureParams(q url.Values, l apiconfig.Limits) (captureParams, error) {
	bad := func(format string, args ...any) (captureParams, error) {
		return captureParams{}, problem.New(http.StatusBadRequest, format, args...)
	}
	for k := range q {
		if !slices.Contains(knownParams, k) {
			return bad("unknown query parameter %q (known: %s)", k, strings.Join(knownParams, ", "))
		}
	}
	for _, k := range knownParams {
		if k != "instance" && k != "device" && len(q[k]) > 1 {
			return bad("query parameter %q is given %d times", k, len(q[k]))
		}
	}
	p := captureParams{
		process:  "web",
		snaplen:  min(65535, l.MaxSnaplen),
		duration: l.DefaultDuration.D(),
		format:   capture.FormatPcap,
	}
	seen := map[int]bool{}
	for _, v := range q["instance"] {
		for _, s := range strings.Split(v, ",") {
			i, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || i < 0 || i > 100000 {
				return bad("instance %q is not an instance index (0, 1, ...)", s)
			}
			if !seen[i] {
				seen[i] = true
				p.indices = append(p.indices, i)
			}
			if len(p.indices) > maxInstances {
				return bad("more than %d instances in one capture", maxInstances)
			}
		}
	}
	if v := q.Get("process"); v != "" {
		if !processPattern.MatchString(v) {
			return bad("process %q is not a process type", v)
		}
		p.process = v
	}
	for _, v := range q["device"] {
		if v == "" {
			continue // device= alone: the default
		}
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if !wire.ValidDevice(d) {
				return bad("device %q is not a network interface name", d)
			}
			if !slices.Contains(p.devices, d) {
				p.devices = append(p.devices, d)
			}
			if len(p.devices) > wire.MaxDevices {
				return bad("more than %d devices in one capture", wire.MaxDevices)
			}
		}
	}
	if len(p.devices) == 0 {
		p.devices = []string{"eth0"}
	}
	p.filter = q.Get("filter")
	if len(p.filter) > wire.MaxFilterLength {
		return bad("filter is %d characters long, the maximum is %d", len(p.filter), wire.MaxFilterLength)
	}
	// Refused here, before any agent is asked to compile it.
	if err := bpfbound.Check(p.filter); err != nil {
		return bad("%v", err)
	}
	if v := q.Get("snaplen"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return bad("snaplen %q is not a positive number of bytes", v)
		}
		if n > l.MaxSnaplen {
			return bad("snaplen %d exceeds the maximum of %d", n, l.MaxSnaplen)
		}
		p.snaplen = n
	}
	if v := q.Get("duration"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return bad("duration %q is not a positive Go duration such as 30s or 5m", v)
		}
		p.duration = min(d, l.MaxDuration.D())
	}
	if v := q.Get("packets"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return bad("packets %q is not a positive number", v)
		}
		p.maxPackets = n
	}
	f, err := capture.ParseFormat(q.Get("format"))
	if err != nil {
		return bad("%v", err)
	}
	p.format = f
	if len(p.devices) > 1 {
		// pcap has no interfaces to tell the devices apart.
		if q.Get("format") != "" && f != capture.FormatPcapng {
			return bad("several devices (%s) need format pcapng, one interface per instance and device", strings.Join(p.devices, ", "))
		}
		p.format = capture.FormatPcapng
	}
	return p, nil
}
