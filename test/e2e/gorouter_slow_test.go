package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
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
	f.startRouter(t, realcf.RouterOptions{}) // request_timeout_in_seconds: 900
	// Statistics every 5 s: about 180 in 15 minutes.
	f.quietCaptures(t, 15*time.Minute, 90)
}
