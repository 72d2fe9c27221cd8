package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/audit"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
)

// stubBosh takes the token "admin-token" as a director admin and
// "reader-token" as a reader, and knows deployment cf: router/0 with a
// VM, router/1 without one.
type stubBosh struct{ resolved atomic.Int32 }

func (b *stubBosh) Authenticate(_ context.Context, h string) (*Identity, error) {
	switch h {
	case "bearer admin-token":
		return &Identity{UserID: "ops", UserName: "ops", ClientID: "bosh_cli", Scopes: []string{"bosh.admin"}}, nil
	case "bearer reader-token":
		return &Identity{UserID: "auditor", ClientID: "bosh_cli", Scopes: []string{"bosh.read"}}, nil
	}
	return nil, problem.New(http.StatusUnauthorized, "token is not valid")
}

func (b *stubBosh) Resolve(_ context.Context, id *Identity, deployment string, slugs []string) ([]capture.VM, error) {
	b.resolved.Add(1)
	switch {
	case !slices.Contains(id.Scopes, "bosh.admin"):
		return nil, problem.New(http.StatusForbidden, "capturing VMs of deployment %q needs an admin scope", deployment)
	case deployment != "cf":
		return nil, problem.New(http.StatusNotFound, "Deployment '%s' doesn't exist", deployment)
	}
	return []capture.VM{
		{Deployment: "cf", Group: "router", Index: 0, ID: "r0-id", AZ: "z1", IPs: []netip.Addr{netip.MustParseAddr("10.0.1.5")}},
		{Deployment: "cf", Group: "router", Index: 1, ID: "r1-id", Unavailable: "the director lists no VM for instance router/1 (r1-id)"},
	}, nil
}

func (b *stubBosh) IsAdmin(id *Identity) bool { return slices.Contains(id.Scopes, "bosh.admin") }

type boshServer struct {
	url     string
	bosh    *stubBosh
	audit   *bytes.Buffer
	metrics *apimetrics.Metrics
}

func newBoshServer(t *testing.T, withBosh bool) *boshServer {
	t.Helper()
	b := &boshServer{bosh: &stubBosh{}, audit: &bytes.Buffer{}, metrics: apimetrics.New(prometheus.NewRegistry())}
	opts := Options{Limits: apiconfig.Default().Limits, Audit: audit.New(b.audit), Metrics: b.metrics}
	if withBosh {
		opts.Bosh = b.bosh
	}
	// An API for BOSH VMs only: no Cloud Foundry access.
	srv := httptest.NewServer(New(opts, nil, nil, tunnel.NewRegistry()).Handler())
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

func (b *boshServer) do(t *testing.T, method, path, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, b.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Detail string }
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp, p.Detail
}

// Without a bosh section the endpoints do not exist; without Cloud
// Foundry access the apps' do not.
func TestBoshEndpointsOnlyWhenConfigured(t *testing.T) {
	off := newBoshServer(t, false)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/bosh/deployments/cf/capture?instance=router"},
		{http.MethodDelete, "/v1/bosh/deployments/cf/capture/0123456789abcdef"},
	} {
		if resp, detail := off.do(t, c.method, c.path, "admin-token"); resp.StatusCode != http.StatusNotFound || !strings.Contains(detail, "no such endpoint") {
			t.Errorf("%s %s without bosh: %d %s", c.method, c.path, resp.StatusCode, detail)
		}
	}
	if off.bosh.resolved.Load() != 0 {
		t.Error("a director was asked")
	}
	on := newBoshServer(t, true)
	if resp, _ := on.do(t, http.MethodGet, "/v1/apps/0c0ffee0-1111-4222-8333-444455556666/capture", "admin-token"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an app capture on an API without Cloud Foundry: %d", resp.StatusCode)
	}
}

// Bad requests are refused before the director is asked; the director's
// refusals come back with their status; each refusal is audited with the
// deployment.
func TestBoshCaptureRefusals(t *testing.T) {
	b := newBoshServer(t, true)
	for _, c := range []struct {
		path, token string
		status      int
		detail      string
		resolves    bool
	}{
		{"/v1/bosh/deployments/cf/capture?instance=router", "", 401, "token is not valid", false},
		{"/v1/bosh/deployments/cf/capture", "admin-token", 400, "name the instances to capture", false},
		{"/v1/bosh/deployments/cf/capture?instance=router/0/x", "admin-token", 400, "not a BOSH instance", false},
		{"/v1/bosh/deployments/cf/capture?instance=router&process=web", "admin-token", 400, `unknown query parameter "process"`, false},
		{"/v1/bosh/deployments/c%20f/capture?instance=router", "admin-token", 400, "not a BOSH deployment name", false},
		{"/v1/bosh/deployments/cf/capture?instance=router&device=eth0,lo&format=pcap", "admin-token", 400, "need format pcapng", false},
		{"/v1/bosh/deployments/cf/capture?instance=router", "reader-token", 403, "needs an admin scope", true},
		{"/v1/bosh/deployments/nope/capture?instance=router", "admin-token", 404, "doesn't exist", true},
	} {
		before := b.bosh.resolved.Load()
		resp, detail := b.do(t, http.MethodGet, c.path, c.token)
		if resp.StatusCode != c.status || !strings.Contains(detail, c.detail) || resp.Header.Get("Pcap-Capture-Id") == "" {
			t.Errorf("%s: %d %q, want %d %q", c.path, resp.StatusCode, detail, c.status, c.detail)
		}
		if resolved := b.bosh.resolved.Load() > before; resolved != c.resolves {
			t.Errorf("%s: resolved %v", c.path, resolved)
		}
	}
	if got := testutil.ToFloat64(b.metrics.CaptureRequests.WithLabelValues("400", apimetrics.TargetBosh)); got != 5 {
		t.Errorf("capture_requests_total{code=400,target=bosh} = %v", got)
	}
	if got := testutil.ToFloat64(b.metrics.CaptureRequests.WithLabelValues("400", apimetrics.TargetApp)); got != 0 {
		t.Errorf("capture_requests_total{code=400,target=app} = %v", got)
	}
	var last map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.audit.String()), "\n") {
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			t.Fatal(err)
		}
		if last["target"] != "bosh" || last["event"] != "refused" {
			t.Errorf("audit line %s", line)
		}
	}
	if last["deployment"] != "nope" || last["status"] != 404.0 || last["user_id"] != "ops" {
		t.Errorf("last audit line %v", last)
	}
}

// The instances the director lists are each named in Pcap-Instance-Errors
// when they cannot be captured: without a VM, or without an agent.
func TestBoshInstanceErrors(t *testing.T) {
	b := newBoshServer(t, true)
	resp, detail := b.do(t, http.MethodGet, "/v1/bosh/deployments/cf/capture?instance=router", "admin-token")
	errs := resp.Header.Get("Pcap-Instance-Errors")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(detail, "no instance could be captured; instance router/0: no agent connected for VM router/0 (10.0.1.5)") ||
		!strings.Contains(errs, "router/0: no agent connected") || !strings.Contains(errs, "router/1: the director lists no VM") {
		t.Fatalf("%d %q, Pcap-Instance-Errors %q", resp.StatusCode, detail, errs)
	}
	var rec map[string]any
	if err := json.Unmarshal(b.audit.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["deployment"] != "cf" || !slices.Equal(toStrings(rec["instances"]), []string{"router/0", "router/1"}) ||
		!slices.Equal(toStrings(rec["instance_ids"]), []string{"r0-id", "r1-id"}) {
		t.Errorf("audit %v", rec)
	}
}

// A stop of a capture this replica does not run asks the agents of the
// deployment's VMs; none answering is a 503 that says so.
func TestBoshStopElsewhere(t *testing.T) {
	b := newBoshServer(t, true)
	resp, detail := b.do(t, http.MethodDelete, "/v1/bosh/deployments/cf/capture/0123456789abcdef", "admin-token")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(detail, "capture 0123456789abcdef of deployment cf was not found") ||
		!strings.Contains(detail, "no agent connected for cell 10.0.1.5") {
		t.Fatalf("%d %q", resp.StatusCode, detail)
	}
	if resp, detail := b.do(t, http.MethodDelete, "/v1/bosh/deployments/cf/capture/0123456789abcdef", "reader-token"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a reader's stop: %d %q", resp.StatusCode, detail)
	}
	if resp, _ := b.do(t, http.MethodDelete, "/v1/bosh/deployments/cf/capture/nope", "admin-token"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad capture id: %d", resp.StatusCode)
	}
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
