package pcapcmd

import (
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestParseFlagsAroundTheAppName(t *testing.T) {
	o, err := Parse([]string{"-i", "2,0,2", "my-app", "-f", "tcp port 8080", "--duration=30s", "-c", "100", "-o", "-", "--force"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{App: "my-app", Output: "-", Instances: []int{0, 2}, Filter: "tcp port 8080", Devices: []string{"eth0"}, Snaplen: 65535,
		Duration: 30 * time.Second, Count: 100, Format: "pcapng", Process: "web", Force: true}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("got  %+v\nwant %+v", o, want)
	}
}

func TestParseDefaults(t *testing.T) {
	env := map[string]string{"PCAP_API_URL": "https://pcap.sys.example.com", "PCAP_TOKEN": "tok"}
	o, err := Parse([]string{"my-app", "-i", "1"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Format != "pcap" || o.Output != "my-app.pcap" || o.APIURL != env["PCAP_API_URL"] || o.Token != "tok" {
		t.Fatalf("%+v", o)
	}
	o, _ = Parse([]string{"my-app", "-i", "all"}, noEnv)
	if o.Instances != nil || o.Format != "pcapng" || o.Output != "my-app.pcapng" {
		t.Fatalf("all instances: %+v", o)
	}
	// The README's recipe: two devices of one instance are pcapng.
	o, _ = Parse([]string{"my-app", "-i", "0", "-d", "eth0, lo,eth0", "-f", "tcp port 8080 or tcp port 61001"}, noEnv)
	if !reflect.DeepEqual(o.Devices, []string{"eth0", "lo"}) || o.Format != "pcapng" || o.Output != "my-app.pcapng" {
		t.Fatalf("two devices: %+v", o)
	}
	// Flags win over PCAP_API_URL and PCAP_TOKEN (PCAP_STOP_TIMEOUT has no flag).
	o, _ = Parse([]string{"my-app", "--format", "pcap", "--api-url", "http://x"}, func(k string) string {
		if k == "PCAP_STOP_TIMEOUT" {
			return ""
		}
		return "ignored"
	})
	if o.Format != "pcap" || o.APIURL != "http://x" {
		t.Fatalf("explicit values: %+v", o)
	}
}

func TestParseErrors(t *testing.T) {
	for args, want := range map[string]string{
		"":                                "missing app name",
		"a b":                             "one app at a time",
		"a -i x":                          `--instance "x"`,
		"a -i -1":                         `--instance "-1"`,
		"a --format json":                 "--format",
		"a --snaplen 0":                   "--snaplen",
		"a --nope":                        "-nope",
		"a -v":                            "-v",
		"a --duration forever":            "forever",
		"a -d eth0,,lo":                   `--device "eth0,,lo"`,
		"a -d a,b,c,d,e":                  "at most 4 devices",
		"a -d eth0,lo -i 0 --format pcap": "--format pcap holds one device",
	} {
		_, err := Parse(strings.Fields(args), noEnv)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want a usage error with %q", args, err, want)
		}
	}
}

func TestCaptureURL(t *testing.T) {
	o := Options{Instances: []int{0, 3}, Filter: "tcp port 443", Devices: []string{"eth0"}, Process: "worker", Snaplen: 128, Format: "pcapng", Duration: time.Minute, Count: 5}
	u, err := captureURL("https://pcap.sys.example.com/", "6a3c-11", o)
	if err != nil {
		t.Fatal(err)
	}
	want := "https://pcap.sys.example.com/v1/apps/6a3c-11/capture?duration=1m0s&filter=tcp+port+443&format=pcapng&instance=0&instance=3&packets=5&process=worker&snaplen=128"
	if u != want {
		t.Fatalf("got  %s\nwant %s", u, want)
	}
	o.Devices = []string{"eth0", "lo"}
	if u, _ := captureURL("https://pcap.sys.example.com", "g", o); !strings.Contains(u, "device=eth0&device=lo&") {
		t.Fatalf("two devices: %s", u)
	}
	if _, err := captureURL("pcap.sys.example.com", "g", o); err == nil {
		t.Fatal("a URL without scheme was accepted")
	}
	if _, err := captureURL("https://pcap.sys.example.com", "../agents", o); err == nil {
		t.Fatal("a GUID with a slash was accepted")
	}
	if _, err := Parse([]string{"a", "-h"}, noEnv); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}
