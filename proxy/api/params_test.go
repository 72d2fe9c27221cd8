package api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
)

func TestParseCaptureParams(t *testing.T) {
	l := apiconfig.Default().Limits
	p, err := parseCaptureParams(url.Values{"instance": {"2", "0,2", " 1"}, "duration": {"2h"}, "format": {"pcapng"}, "packets": {"10"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.indices) != 3 || p.indices[0] != 2 || p.indices[2] != 1 || p.duration != 15*time.Minute || p.format != capture.FormatPcapng ||
		p.maxPackets != 10 || !slices.Equal(p.devices, []string{"eth0"}) || p.process != "web" || p.snaplen != 65535 {
		t.Fatalf("%+v", p)
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = strconv.Itoa(i)
	}
	if _, err := parseCaptureParams(url.Values{"instance": {strings.Join(many, ",")}}, l); err == nil || !strings.Contains(err.Error(), "more than 1000") {
		t.Fatalf("1001 instances: %v", err)
	}
	for q, want := range map[string]string{
		"instance=-1":                "instance",
		"instance=x":                 "instance",
		"process=a/b":                "process",
		"snaplen=0":                  "snaplen",
		"packets=0":                  "packets",
		"duration=-1s":               "duration",
		"format=pcap&format=pcapng":  "given 2 times",
		"device=eth0,,lo":            `device ""`,
		"device=eth0&device=a/b":     `device "a/b"`,
		"device=a,b,c,d,e":           "more than 4 devices",
		"device=eth0,lo&format=pcap": "several devices (eth0, lo) need format pcapng",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := parseCaptureParams(v, l); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// Devices come repeated or comma-separated, once each; several make the
// capture pcapng unless pcap was asked for.
func TestParseDevices(t *testing.T) {
	l := apiconfig.Default().Limits
	for q, want := range map[string][]string{
		"":                                 {"eth0"},
		"device=":                          {"eth0"},
		"device=lo":                        {"lo"},
		"device=eth0,lo":                   {"eth0", "lo"},
		"device=eth0&device=lo":            {"eth0", "lo"},
		"device=lo,%20eth0&device=lo":      {"lo", "eth0"},
		"device=a,b&device=c,d&device=a,d": {"a", "b", "c", "d"},
		"device=eth0,lo&format=pcapng":     {"eth0", "lo"},
	} {
		v, _ := url.ParseQuery(q)
		p, err := parseCaptureParams(v, l)
		if err != nil || !slices.Equal(p.devices, want) {
			t.Errorf("%s: devices %v, %v; want %v", q, p.devices, err, want)
			continue
		}
		wantFormat := capture.FormatPcap
		if len(want) > 1 {
			wantFormat = capture.FormatPcapng
		}
		if p.format != wantFormat {
			t.Errorf("%s: format %s", q, p.format)
		}
	}
}

func TestStopSlackOnlyAtTheMaximum(t *testing.T) {
	s := New(Options{Limits: apiconfig.Default().Limits}, nil, nil, nil)
	if d := s.stopSlack(30 * time.Second); d != 0 {
		t.Fatalf("a 30s capture is stopped %v early", d)
	}
	if d := s.stopSlack(15 * time.Minute); d != 2*time.Second {
		t.Fatalf("a capture at the maximum is stopped %v early", d)
	}
}
