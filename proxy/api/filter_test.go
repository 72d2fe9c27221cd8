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

// A filter that would keep libpcap busy for half a minute on the cell is a
// 400 that names the bound, before the Cloud Controller or any agent is
// asked.
func TestTooComplexFilterIsRefusedUpFront(t *testing.T) {
	resolver := &countingResolver{}
	srv := httptest.NewServer(New(Options{Limits: apiconfig.Default().Limits}, admin{}, resolver, tunnel.NewRegistry()).Handler())
	defer srv.Close()
	parts := make([]string, 510)
	for i := range parts {
		parts[i] = fmt.Sprintf("port %d", i+1)
	}
	filter := strings.Join(parts, "||") // 4,990 characters: within the length limit
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
	for _, want := range []string{"509 and/or operators", "64 allowed"} {
		if !strings.Contains(p.Detail, want) {
			t.Errorf("detail %q does not say %q", p.Detail, want)
		}
	}
	if n := resolver.calls.Load(); n != 0 {
		t.Errorf("the capture was resolved %d times", n)
	}
}
