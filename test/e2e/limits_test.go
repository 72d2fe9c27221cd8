package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

func TestLimitsAreEnforced(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	cases := []struct {
		name   string
		mutate func(*apiconfig.Config)
		detail string
	}{
		{"per user", func(c *apiconfig.Config) { c.Limits.CapturesPerUser = 1 }, "maximum per user"},
		{"per API", func(c *apiconfig.Config) { c.Limits.CapturesTotal = 1 }, "maximum of 1 captures"},
		{"per agent", func(c *apiconfig.Config) { c.Limits.CapturesPerAgent = 1 }, "already runs 1 captures"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := startAPI(t, p, oneInstance("127.0.0.1"), c.mutate)
			startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
			first := startCapture(t, api, url.Values{"duration": {"1m"}})
			if first.StatusCode != http.StatusOK {
				t.Fatalf("first capture: %d", first.StatusCode)
			}
			r := finish(t, startCapture(t, api, url.Values{}))
			if r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), c.detail) {
				t.Fatalf("second capture: %d %s", r.status, r.body)
			}
			first.Body.Close()
		})
	}
}

// The agent's own maximum holds even when the API would allow more.
func TestAgentMaxCaptures(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	cfg := agentConfig(p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	cfg.Limits.MaxCaptures = 1
	startAgentWith(t, api, cfg)
	first := startCapture(t, api, url.Values{"duration": {"1m"}})
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first capture: %d", first.StatusCode)
	}
	r := finish(t, startCapture(t, api, url.Values{}))
	if r.status != http.StatusTooManyRequests || !strings.Contains(string(r.body), "maximum of 1 captures") {
		t.Fatalf("second capture: %d %s", r.status, r.body)
	}
}
