package cfsession

import (
	"strings"
	"testing"
)

func TestAPIURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.sys.example.com":     "https://pcap.sys.example.com",
		"https://api.sys.example.com/":    "https://pcap.sys.example.com",
		"https://api.sys.example.com:443": "https://pcap.sys.example.com:443",
		"http://api.bosh-lite.com":        "http://pcap.bosh-lite.com",
	} {
		got, err := APIURL(in)
		if err != nil || got != want {
			t.Errorf("APIURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"https://cc.sys.example.com", "not a url", ""} {
		if _, err := APIURL(in); err == nil || (in != "" && in != "not a url" && !strings.Contains(err.Error(), "--api-url")) {
			t.Errorf("APIURL(%q): %v", in, err)
		}
	}
}
