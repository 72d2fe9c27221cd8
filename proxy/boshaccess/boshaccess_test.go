package boshaccess_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/boshaccess"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/director"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

type world struct {
	uaa      *fakeuaa.UAA
	director *fakebosh.Director
	resolver *boshaccess.Resolver
	routers  []fakebosh.Instance
}

// newWorld is a director with deployment cf (team platform: two routers,
// a database, an errand without a VM) and mysql (team data).
func newWorld(t *testing.T) *world {
	t.Helper()
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	d := fakebosh.New(t, u)
	w := &world{uaa: u, director: d,
		routers: []fakebosh.Instance{fakebosh.NewVM("router", 0, "z1", "10.0.1.5"), fakebosh.NewVM("router", 1, "z2", "10.0.2.5")}}
	d.AddDeployment(fakebosh.Deployment{Name: "cf", Teams: []string{"platform"}},
		w.routers[0], fakebosh.NewVM("database", 0, "z1", "10.0.1.9"), w.routers[1],
		fakebosh.Instance{Group: "smoke-tests", Index: 0, ID: "e7c1aaaa-0000-4000-8000-000000000000", AZ: "z1"})
	d.AddDeployment(fakebosh.Deployment{Name: "mysql", Teams: []string{"data"}}, fakebosh.NewVM("mysql", 0, "z1", "10.0.3.5"))
	c, err := director.New(director.Config{URL: d.URL, HTTPClient: d.Client()})
	if err != nil {
		t.Fatal(err)
	}
	w.resolver = &boshaccess.Resolver{Director: c, UUID: d.UUID}
	return w
}

// identity is what the API's verifier makes of a token with these scopes.
func (w *world) identity(scopes ...string) *uaa.Identity {
	return &uaa.Identity{UserID: "ops", ClientID: fakeuaa.BoshCLIClient, Scopes: scopes,
		Token: w.uaa.UserToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(scopes...))}
}

func wantStatus(t *testing.T, err error, status int, parts ...string) {
	t.Helper()
	var p *problem.Error
	if !errors.As(err, &p) || p.Status != status {
		t.Fatalf("err %v, want %d", err, status)
	}
	for _, s := range parts {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q lacks %q", p.Detail, s)
		}
	}
}

// An admin-class scope that covers the deployment may capture it: the
// director's admins, and the admins of one of its teams.
func TestWhoMayCapture(t *testing.T) {
	w := newWorld(t)
	for name, scopes := range map[string][]string{
		"bosh.admin":           {fakeuaa.ScopeBoshAdmin},
		"bosh.UUID.admin":      {fakeuaa.BoshDirectorAdmin(w.director.UUID)},
		"its team's admin":     {fakeuaa.BoshTeamAdmin("platform")},
		"one of several teams": {fakeuaa.BoshTeamAdmin("data"), fakeuaa.BoshTeamAdmin("platform")},
	} {
		vms, err := w.resolver.Resolve(t.Context(), w.identity(scopes...), "cf", []string{"router/0"})
		if err != nil || len(vms) != 1 || vms[0].ID != w.routers[0].ID {
			t.Errorf("%s: %+v, %v", name, vms, err)
		}
	}
}

// Read scopes never suffice, alone or beside a team admin scope of
// another team; a team admin may not capture another team's deployment.
// Without an admin-class scope the director is not even asked.
func TestWhoMayNot(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name       string
		scopes     []string
		askDir     bool
		detailPart string
	}{
		{"bosh.read", []string{fakeuaa.ScopeBoshRead}, false, "only bosh.read"},
		{"bosh.UUID.read", []string{fakeuaa.BoshDirectorRead(w.director.UUID)}, false, "read scopes do not suffice"},
		{"its team's read", []string{fakeuaa.BoshTeamRead("platform")}, false, "only bosh.teams.platform.read"},
		{"no bosh scope", []string{"openid"}, false, "no bosh scope"},
		{"another team's admin", []string{fakeuaa.BoshTeamAdmin("data")}, true, "not a deployment of your teams (data)"},
		{"read beside another team's admin", []string{fakeuaa.ScopeBoshRead, fakeuaa.BoshTeamAdmin("data")}, true, `"cf" belongs to teams platform; this token administers only data`},
		{"team read beside another team's admin", []string{fakeuaa.BoshTeamRead("platform"), fakeuaa.BoshTeamAdmin("data")}, true, "belongs to teams platform"},
		{"another director's admin", []string{"bosh.0000-other.admin"}, false, "needs an admin scope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := w.director.TotalRequests()
			vms, err := w.resolver.Resolve(t.Context(), w.identity(c.scopes...), "cf", []string{"router"})
			if vms != nil {
				t.Errorf("VMs %+v", vms)
			}
			wantStatus(t, err, http.StatusForbidden, c.detailPart)
			if asked := w.director.TotalRequests() > before; asked != c.askDir {
				t.Errorf("director asked: %v, want %v", asked, c.askDir)
			}
			if w.director.Requests(fakebosh.ListInstances) != 0 {
				t.Error("the instances were listed for a caller who may not capture")
			}
		})
	}
}

// The director has the last word, with the caller's own token: its 401
// code 600000 is a 403, an unknown deployment a 404.
func TestDirectorsRefusals(t *testing.T) {
	w := newWorld(t)
	admin := w.identity(fakeuaa.ScopeBoshAdmin)
	w.director.Inject(fakebosh.ListInstances, fakebosh.Fault{Status: 401,
		Body: `{"code":600000,"description":"Require one of the scopes: bosh.admin, bosh.teams.platform.admin"}`})
	_, err := w.resolver.Resolve(t.Context(), admin, "cf", []string{"router"})
	wantStatus(t, err, http.StatusForbidden, "Require one of the scopes: bosh.admin, bosh.teams.platform.admin")
	w.director.Clear()
	_, err = w.resolver.Resolve(t.Context(), admin, "nope", []string{"router"})
	wantStatus(t, err, http.StatusNotFound, "Deployment 'nope' doesn't exist")
}

// Slugs name a group, an index or an id; each instance comes once, in the
// director's order; one without a VM comes marked unavailable; an
// unknown one is a 404 that says what there is.
func TestSlugs(t *testing.T) {
	w := newWorld(t)
	admin := w.identity(fakeuaa.ScopeBoshAdmin)
	names := func(vms []capture.VM) string {
		var out []string
		for _, vm := range vms {
			out = append(out, vm.Instance())
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		slugs []string
		want  string
	}{
		{[]string{"router"}, "router/0 router/1"},
		{[]string{"router/1"}, "router/1"},
		{[]string{"router/" + w.routers[1].ID}, "router/1"},
		{[]string{"router/1", "database", "router"}, "router/0 database/0 router/1"},
		{nil, "router/0 database/0 router/1 smoke-tests/0"},
	} {
		vms, err := w.resolver.Resolve(t.Context(), admin, "cf", c.slugs)
		if err != nil || names(vms) != c.want {
			t.Errorf("%v: %q, %v; want %q", c.slugs, names(vms), err, c.want)
		}
	}
	vms, err := w.resolver.Resolve(t.Context(), admin, "cf", []string{"router/0"})
	if err != nil || vms[0].Deployment != "cf" || vms[0].AZ != "z1" || len(vms[0].IPs) != 1 || vms[0].IPs[0].String() != "10.0.1.5" || vms[0].Unavailable != "" {
		t.Fatalf("router/0 %+v, %v", vms, err)
	}
	vms, err = w.resolver.Resolve(t.Context(), admin, "cf", []string{"smoke-tests"})
	if err != nil || len(vms) != 1 || !strings.Contains(vms[0].Unavailable, "no VM") {
		t.Fatalf("an errand %+v, %v", vms, err)
	}
	_, err = w.resolver.Resolve(t.Context(), admin, "cf", []string{"router/7"})
	wantStatus(t, err, http.StatusNotFound, "no instance router/7", "router/0 ("+w.routers[0].ID+")", "router/1")
	_, err = w.resolver.Resolve(t.Context(), admin, "cf", []string{"gorouter"})
	wantStatus(t, err, http.StatusNotFound, `no instance group "gorouter"`, "router, database, smoke-tests")
}

func TestIsAdmin(t *testing.T) {
	w := newWorld(t)
	for scopes, want := range map[string]bool{
		fakeuaa.ScopeBoshAdmin:                                 true,
		fakeuaa.BoshDirectorAdmin(w.director.UUID):             true,
		fakeuaa.BoshDirectorAdmin("another-uuid"):              false,
		fakeuaa.BoshTeamAdmin("platform"):                      false,
		fakeuaa.ScopeBoshRead + " " + "cloud_controller.admin": false,
	} {
		if got := w.resolver.IsAdmin(w.identity(strings.Fields(scopes)...)); got != want {
			t.Errorf("%s: %v", scopes, got)
		}
	}
}
