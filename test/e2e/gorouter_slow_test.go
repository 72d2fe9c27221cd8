package e2e

import (
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
)

// slowTests is the variable that runs the tests that take minutes.
const slowTests = "PCAP_SLOW_TESTS"

// Fifteen minutes without a packet, with the defaults of a deployment
// (a write timeout of a minute, pcapng statistics every 5 s, the
// gorouter's request timeout of 900 s and the API's maximum duration of
// 15 minutes): every capture ends at its duration with its trailers,
// through the gorouter and direct, over HTTP/1.1 and HTTP/2.
func TestQuietFifteenMinutes(t *testing.T) {
	if os.Getenv(slowTests) != "1" {
		t.Skipf("skipped: a capture silent for 15 minutes takes 15 minutes; %s=1 runs it", slowTests)
	}
	f := newRouted(t, func(c *apiconfig.Config) { c.Limits.CapturesPerUser, c.Limits.CapturesPerAgent = 16, 16 })
	r := f.router
	quiet := url.Values{"filter": {"udp port 1"}, "duration": {"15m"}}
	for _, tc := range []struct {
		name   string
		client *http.Client
		base   string
		format string
	}{
		{"gorouter TLS route HTTP/2", &http.Client{Transport: r.Transport(true)}, r.URL(tlsHost, true), "pcap"},
		{"gorouter TLS route HTTP/2 pcapng", &http.Client{Transport: r.Transport(true)}, r.URL(tlsHost, true), "pcapng"},
		{"gorouter TLS route HTTP/1.1", &http.Client{Transport: r.Transport(false)}, r.URL(tlsHost, true), "pcap"},
		{"gorouter port route HTTP/1.1", &http.Client{Transport: r.Transport(false)}, r.URL(plainHost, false), "pcap"},
		{"direct HTTPS HTTP/2", f.direct(true), f.tlsAPI.url, "pcap"},
		{"direct HTTPS HTTP/1.1", f.direct(false), f.tlsAPI.url, "pcap"},
		{"direct HTTP/1.1", f.direct(false), f.plainAPI.url, "pcap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := url.Values{"format": {tc.format}}
			for k, v := range quiet {
				q[k] = v
			}
			start := time.Now()
			resp := captureVia(t, tc.client, tc.base, q)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, finish(t, resp).body)
			}
			res := finishWithin(t, resp, 16*time.Minute)
			if tr := res.trailer; tr.Get("Pcap-End-Reason") != "duration" || tr.Get("Pcap-Packets") != "0" {
				t.Fatalf("after %s of silence over %s: trailers %v", time.Since(start).Round(time.Second), resp.Proto, tr)
			}
			if tc.format == "pcapng" {
				// Every 5 s: about 180 in 15 minutes.
				if n := countISBs(res.body); n < 90 {
					t.Fatalf("%d interface statistics blocks in 15 quiet minutes", n)
				}
			}
			t.Logf("ended after %s with trailers %v", time.Since(start).Round(time.Second), res.trailer)
		})
	}
}
