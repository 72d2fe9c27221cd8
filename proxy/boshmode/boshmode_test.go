package boshmode_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/boshmode"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func setup(t *testing.T, mutate func(*apiconfig.Bosh)) (*fakeuaa.UAA, *fakebosh.Director, *boshmode.Access) {
	t.Helper()
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	d := fakebosh.New(t, u)
	d.AddDeployment(fakebosh.Deployment{Name: "cf", Teams: []string{"platform"}}, fakebosh.NewVM("router", 0, "z1", "10.0.1.5"))
	ca := filepath.Join(t.TempDir(), "director-ca.pem")
	if err := os.WriteFile(ca, d.CA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &apiconfig.Bosh{DirectorURL: d.URL, CA: ca}
	if mutate != nil {
		mutate(cfg)
	}
	a, err := boshmode.New(t.Context(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u, d, a
}

func status(err error) int {
	var p *problem.Error
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// Nothing is contacted until a request for a VM; then the director says
// where its UAA is (over the verified connection, its CA serving for the
// UAA too), and tokens are verified against that UAA's keys and the bosh
// audience rule.
func TestFindsTheDirectorsUAAAtTheFirstRequest(t *testing.T) {
	u, d, a := setup(t, nil)
	if n := d.TotalRequests() + u.TotalRequests(); n != 0 {
		t.Fatalf("%d requests before any capture", n)
	}
	user := u.UserToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes("openid", fakeuaa.ScopeBoshAdmin))
	id, err := a.Authenticate(t.Context(), "bearer "+user)
	if err != nil || id.UserID != "ops" {
		t.Fatalf("%+v, %v", id, err)
	}
	if d.Requests(fakebosh.GetInfo) != 1 || u.Requests(fakeuaa.GetTokenKeys) != 1 {
		t.Errorf("/info asked %d times, token keys %d", d.Requests(fakebosh.GetInfo), u.Requests(fakeuaa.GetTokenKeys))
	}
	if !a.IsAdmin(id) {
		t.Error("bosh.admin is no admin")
	}
	vms, err := a.Resolve(t.Context(), id, "cf", []string{"router"})
	if err != nil || len(vms) != 1 || vms[0].Instance() != "router/0" {
		t.Fatalf("%+v, %v", vms, err)
	}
	for name, token := range map[string]string{
		"a Cloud Foundry token":   fakeuaa.New(t).UserToken("dev"),
		"an audience for others":  u.UserToken("ops", fakeuaa.Audience("cf", "cloud_controller"), fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)),
		"a refresh token":         u.RefreshToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient)),
		"an opaque token":         "5b0d4ea8d5b44ccb8a3f0e0b3d62e0a6",
		"a team admin's, expired": u.ClientToken("ci", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("platform")), fakeuaa.Expired()),
	} {
		if _, err := a.Authenticate(t.Context(), "bearer "+token); status(err) != http.StatusUnauthorized {
			t.Errorf("%s: %v", name, err)
		}
	}
	if d.Requests(fakebosh.GetInfo) != 1 {
		t.Errorf("/info asked %d times", d.Requests(fakebosh.GetInfo))
	}
	// A team admin's token names bosh.teams.platform, not bosh: its
	// audience is a bosh resource all the same.
	if _, err := a.Authenticate(t.Context(), "bearer "+u.ClientToken("ci", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("platform")))); err != nil {
		t.Errorf("a team admin's client token: %v", err)
	}
}

// A director that does not answer is a 503 for the captures of VMs, asked
// again only after a pause; once it answers, it is found.
func TestDirectorDown(t *testing.T) {
	u, d, a := setup(t, nil)
	d.Inject(fakebosh.GetInfo, fakebosh.Fault{Status: 502, Body: "bad gateway"})
	token := "bearer " + u.ClientToken("ops", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))
	for range 3 {
		if _, err := a.Authenticate(t.Context(), token); status(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "cannot be asked about its UAA") {
			t.Fatalf("%v", err)
		}
	}
	if n := d.Requests(fakebosh.GetInfo); n != 1 {
		t.Fatalf("/info asked %d times within the pause", n)
	}
}

// The director is trusted only with its CA: a connection that cannot be
// verified names no UAA.
func TestUntrustedDirector(t *testing.T) {
	u, _, a := setup(t, func(c *apiconfig.Bosh) {
		other := filepath.Join(filepath.Dir(c.CA), "other-ca.pem")
		_ = os.WriteFile(other, fakeuaa.New(t).CA.CertPEM(), 0o644)
		c.CA = other
	})
	_, err := a.Authenticate(t.Context(), "bearer "+u.ClientToken("ops", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)))
	if status(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("%v", err)
	}
	if u.TotalRequests() != 0 {
		t.Error("the UAA was asked although the director is not trusted")
	}
}

// A configured issuer wins over /info's: tokens of the UAA /info names
// are then refused.
func TestConfiguredIssuer(t *testing.T) {
	u, _, a := setup(t, func(c *apiconfig.Bosh) { c.UAA.Issuer = "https://uaa.example.com:8443/oauth/token" })
	_, err := a.Authenticate(t.Context(), "bearer "+u.ClientToken("ops", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)))
	if status(err) == 0 || err == nil {
		t.Fatalf("a token of another issuer: %v", err)
	}
}
