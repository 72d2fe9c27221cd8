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
	indices    []int    // apps: empty means every running instance
	slugs      []string // BOSH VMs: GROUP, GROUP/INDEX or GROUP/ID, at least one
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
	// knownBoshParams are an app's without process: a VM runs no process
	// types.
	knownBoshParams = []string{"instance", "device", "filter", "snaplen", "duration", "packets", "format"}
	// BOSH names: deployments, instance groups (letters, digits, - _ .)
	// and instance ids (UUIDs) or indexes.
	boshNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	boshSlugPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9][A-Za-z0-9-]{0,127})?$`)
)

func badParam(format string, args ...any) error {
	return problem.New(http.StatusBadRequest, format, args...)
}

// parseCaptureParams validates the query of an app capture against the
// limits; a duration above the maximum is capped, everything else out of
// range is a 400 that says what is wrong.
func parseCaptureParams(q url.Values, l apiconfig.Limits) (captureParams, error) {
	p, err := parseCommonParams(q, l, knownParams)
	if err != nil {
		return captureParams{}, err
	}
	seen := map[int]bool{}
	for _, v := range q["instance"] {
		for _, s := range strings.Split(v, ",") {
			i, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || i < 0 || i > 100000 {
				return captureParams{}, badParam("instance %q is not an instance index (0, 1, ...)", s)
			}
			if !seen[i] {
				seen[i] = true
				p.indices = append(p.indices, i)
			}
			if len(p.indices) > maxInstances {
				return captureParams{}, badParam("more than %d instances in one capture", maxInstances)
			}
		}
	}
	p.process = "web"
	if v := q.Get("process"); v != "" {
		if !processPattern.MatchString(v) {
			return captureParams{}, badParam("process %q is not a process type", v)
		}
		p.process = v
	}
	return p, nil
}

// parseBoshParams validates the query of a capture of BOSH VMs: the
// instances as the bosh CLI names them (GROUP for all of a group,
// GROUP/INDEX, GROUP/ID), repeated or comma-separated, at least one, and
// the rest as for apps.
func parseBoshParams(q url.Values, l apiconfig.Limits) (captureParams, error) {
	p, err := parseCommonParams(q, l, knownBoshParams)
	if err != nil {
		return captureParams{}, err
	}
	for _, v := range q["instance"] {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if !boshSlugPattern.MatchString(s) {
				return captureParams{}, badParam("instance %q is not a BOSH instance: want GROUP, GROUP/INDEX or GROUP/ID (router, router/0)", s)
			}
			if !slices.Contains(p.slugs, s) {
				p.slugs = append(p.slugs, s)
			}
			if len(p.slugs) > maxInstances {
				return captureParams{}, badParam("more than %d instances in one capture", maxInstances)
			}
		}
	}
	if len(p.slugs) == 0 {
		return captureParams{}, badParam("name the instances to capture: instance=GROUP, GROUP/INDEX or GROUP/ID, repeated or comma-separated (instance=router/0&instance=router/1)")
	}
	return p, nil
}

// parseCommonParams checks that the query has only known parameters and
// validates what apps and VMs share: devices, filter, snaplen, duration,
// packets, format.
func parseCommonParams(q url.Values, l apiconfig.Limits, known []string) (captureParams, error) {
	bad := func(format string, args ...any) (captureParams, error) {
		return captureParams{}, badParam(format, args...)
	}
	for k := range q {
		if !slices.Contains(known, k) {
			return bad("unknown query parameter %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	for _, k := range known {
		if k != "instance" && k != "device" && len(q[k]) > 1 {
			return bad("query parameter %q is given %d times", k, len(q[k]))
		}
	}
	p := captureParams{
		snaplen:  min(65535, l.MaxSnaplen),
		duration: l.DefaultDuration.D(),
		format:   capture.FormatPcap,
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
