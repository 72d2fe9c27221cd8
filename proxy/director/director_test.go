package director_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/director"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func setup(t *testing.T) (*fakeuaa.UAA, *fakebosh.Director, *director.Client) {
	t.Helper()
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	d := fakebosh.New(t, u)
	d.AddDeployment(fakebosh.Deployment{Name: "cf", Teams: []string{"platform", "ops"}},
		fakebosh.NewVM("router", 0, "z1", "10.0.1.5"), fakebosh.Instance{Group: "smoke-tests", Index: 0, ID: "e7c1"})
	c, err := director.New(director.Config{URL: d.URL, HTTPClient: d.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return u, d, c
}

func wantProblem(t *testing.T, err error, status int, parts ...string) {
	t.Helper()
	var p *problem.Error
	if !errors.As(err, &p) || p.Status != status {
		t.Fatalf("err %v, want a %d", err, status)
	}
	for _, s := range parts {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q lacks %q", p.Detail, s)
		}
	}
}

func TestDiscoverIssuer(t *testing.T) {
	u, d, c := setup(t)
	issuer, uuid, err := c.DiscoverIssuer(t.Context())
	if err != nil || issuer != u.Issuer || uuid != d.UUID {
		t.Fatalf("issuer %q uuid %q, %v; want %q %q", issuer, uuid, err, u.Issuer, d.UUID)
	}
	d.Inject(fakebosh.GetInfo, fakebosh.Fault{Status: 200, Body: `{"uuid":"x","user_authentication":{"type":"basic","options":{}}}`})
	_, _, err = c.DiscoverIssuer(t.Context())
	wantProblem(t, err, http.StatusBadGateway, "names no UAA", `"basic"`)
}

// The director's shapes, read with the user's token.
func TestDeploymentsAndInstances(t *testing.T) {
	u, _, c := setup(t)
	admin := u.UserToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))
	deps, err := c.Deployments(t.Context(), admin)
	if err != nil || len(deps) != 1 || deps[0].Name != "cf" || strings.Join(deps[0].Teams, ",") != "platform,ops" {
		t.Fatalf("deployments %+v, %v", deps, err)
	}
	in, err := c.Instances(t.Context(), admin, "cf")
	if err != nil || len(in) != 2 {
		t.Fatalf("instances %+v, %v", in, err)
	}
	if r := in[0]; r.Job != "router" || r.Index == nil || *r.Index != 0 || r.AZ != "z1" || r.CID == "" || len(r.IPs) != 1 || r.IPs[0] != "10.0.1.5" || !r.ExpectsVM {
		t.Errorf("router/0 %+v", r)
	}
	if e := in[1]; e.CID != "" || len(e.IPs) != 0 || e.ID != "e7c1" {
		t.Errorf("a VM-less instance %+v", e)
	}
}

// The director's refusals become pcap-server's statuses: its 401 code
// 600000 (a scope that does not cover the deployment) is a 403, its
// plain 401 (a token it does not take) a 401, its 404 code 70000 a 404;
// a director that does not answer, or whose certificate is not trusted,
// a 503.
func TestRefusals(t *testing.T) {
	u, d, c := setup(t)
	other := u.ClientToken("data", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("data")))
	_, err := c.Instances(t.Context(), other, "cf")
	wantProblem(t, err, http.StatusForbidden, "refused access to the instances of deployment \"cf\"", "Require one of the scopes: bosh.admin")

	_, err = c.Instances(t.Context(), fakeuaa.New(t).UserToken("x"), "cf")
	wantProblem(t, err, http.StatusUnauthorized, "does not accept the token", "Not authorized")

	admin := u.ClientToken("admin", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))
	_, err = c.Instances(t.Context(), admin, "nope")
	wantProblem(t, err, http.StatusNotFound, "Deployment 'nope' doesn't exist")

	d.Inject(fakebosh.ListInstances, fakebosh.Fault{Status: 500, Body: "<html>boom</html>"})
	_, err = c.Instances(t.Context(), admin, "cf")
	wantProblem(t, err, http.StatusBadGateway, "HTTP 500")
	d.Inject(fakebosh.ListInstances, fakebosh.Fault{Status: 200, Body: `{"not":"a list"}`})
	_, err = c.Instances(t.Context(), admin, "cf")
	wantProblem(t, err, http.StatusBadGateway, "invalid answer")
	d.Inject(fakebosh.ListInstances, fakebosh.Fault{Drop: true})
	_, err = c.Instances(t.Context(), admin, "cf")
	wantProblem(t, err, http.StatusServiceUnavailable, "unreachable")
	d.Clear()

	slow, _ := director.New(director.Config{URL: d.URL, HTTPClient: d.Client(), Timeout: 100 * time.Millisecond})
	d.Inject(fakebosh.ListInstances, fakebosh.Fault{Delay: time.Minute})
	_, err = slow.Instances(t.Context(), admin, "cf")
	wantProblem(t, err, http.StatusServiceUnavailable, "timed out")
	d.Clear()

	untrusting, _ := director.New(director.Config{URL: d.URL, HTTPClient: fakeuaa.New(t).Client()})
	_, err = untrusting.Info(t.Context())
	wantProblem(t, err, http.StatusServiceUnavailable, "not trusted")
}
