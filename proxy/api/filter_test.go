package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

type admin struct{}

func (admin) Authenticate(context.Context, string) (*Identity, error) {
	return &Identity{UserID: "u", ClientID: "cf", Scopes: []string{uaa.AdminScope}}, nil
}

// countingResolver counts the captures that got past parameter checks.
type countingResolver struct{ calls atomic.Int32 }

func (r *countingResolver) Resolve(context.Context, *Identity, string, string, []int) (App, []capture.AppInstance, error) {
	r.calls.Add(1)
	return App{}, nil, problem.New(http.StatusNotFound, "no such app")
}

func (r *countingResolver) ResolveForStop(ctx context.Context, id *Identity, appGUID, process string) (App, []capture.AppInstance, error) {
	return r.Resolve(ctx, id, appGUID, process, nil)
}

// refusedUpFront asks for a capture with filter and returns the detail
// of the 400 it gets, checking that neither the Cloud Controller nor any
// agent was asked.
func refusedUpFront(t *testing.T, filter string) string {
	t.Helper()
	resolver := &countingResolver{}
	srv := httptest.NewServer(New(Options{Limits: apiconfig.Default().Limits}, admin{}, resolver, tunnel.NewRegistry()).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/apps/0c0ffee0-1111-4222-8333-444455556666/capture?" + url.Values{"filter": {filter}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Detail string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), p.Detail)
	}
	if n := resolver.calls.Load(); n != 0 {
		t.Errorf("the capture was resolved %d times", n)
	}
	return p.Detail
}

// A filter that would keep libpcap busy for half a minute on the cell is a
// 400 that names the bound, before the Cloud Controller or any agent is
// asked.
func TestTooComplexFilterIsRefusedUpFront(t *testing.T) {
	parts := make([]string, 510)
	for i := range parts {
		parts[i] = fmt.Sprintf("port %d", i+1)
	}
	detail := refusedUpFront(t, strings.Join(parts, "||")) // 4,990 characters: within the length limit
	for _, want := range []string{"509 and/or operators", "64 allowed"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail %q does not say %q", detail, want)
		}
	}
}

// The bound counts what libpcap reads: an operator right after an IPv6
// address counts. And a host name, which the cell would resolve in the
// container's network, is refused by name.
func TestBoundBypassesAreRefusedUpFront(t *testing.T) {
	parts := make([]string, 379)
	for i := range parts {
		parts[i] = fmt.Sprintf("host ::%x", i+1)
	}
	if detail := refusedUpFront(t, strings.Join(parts, "or ")); !strings.Contains(detail, "378 and/or operators") {
		t.Errorf("IPv6 addresses and or without spaces: %q", detail)
	}
	if detail := refusedUpFront(t, "tcp port 443 and host many.example"); !strings.Contains(detail, `host "many.example"`) {
		t.Errorf("a host name: %q", detail)
	}
}
