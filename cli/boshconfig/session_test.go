package boshconfig_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/boshconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

type env struct {
	uaa      *fakeuaa.UAA
	director *fakebosh.Director
	path     string
}

// newEnv is a director and its UAA, and a bosh CLI config with the
// director as alias "lab", logged in as user ops with access (and refresh
// token) as given, with a key of its own beside them.
func newEnv(t *testing.T, access, refresh string) *env {
	t.Helper()
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	e := &env{uaa: u, director: fakebosh.New(t, u), path: filepath.Join(t.TempDir(), "config")}
	e.write(t, access, refresh)
	return e
}

func (e *env) write(t *testing.T, access, refresh string) {
	t.Helper()
	ca := strings.ReplaceAll(strings.TrimSpace(string(e.director.CA.CertPEM())), "\n", "\n    ")
	cfg := fmt.Sprintf("environments:\n- url: %s\n  ca_cert: |-\n    %s\n  alias: lab\n  access_token: %s\n  access_token_type: bearer\n  refresh_token: %s\n  kept: yes\n",
		e.director.URL, ca, access, refresh)
	if err := os.WriteFile(e.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) userToken(opts ...fakeuaa.TokenOption) string {
	return e.uaa.UserToken("ops", append([]fakeuaa.TokenOption{fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)}, opts...)...)
}

func (e *env) refreshToken() string {
	return e.uaa.RefreshToken("ops", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))
}

func (e *env) open(t *testing.T, o boshconfig.Options) *boshconfig.Session {
	t.Helper()
	o.Path = e.path
	if o.Environment == "" {
		o.Environment = "lab"
	}
	s, err := boshconfig.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A token that stays valid is used as it is: nobody is asked.
func TestFreshTokenAsIs(t *testing.T) {
	e := newEnv(t, "", "")
	access := e.userToken()
	e.write(t, access, e.refreshToken())
	s := e.open(t, boshconfig.Options{})
	if got, err := s.Token(t.Context()); err != nil || got != access {
		t.Fatalf("%v", err)
	}
	if n := e.director.TotalRequests() + e.uaa.TotalRequests(); n != 0 {
		t.Errorf("%d requests for a fresh token", n)
	}
	if s.Director() != e.director.URL {
		t.Errorf("director %s", s.Director())
	}
}

// A token about to expire is refreshed at the UAA the director names,
// as bosh_cli, and written back as the bosh CLI keeps it: the other keys
// as they were, the file's mode too, no temporary file left.
func TestExpiringTokenRefreshedAndWrittenBack(t *testing.T) {
	e := newEnv(t, "", "")
	refresh := e.refreshToken()
	e.write(t, e.userToken(fakeuaa.ExpiresAt(time.Now().Add(30*time.Second))), refresh)
	s := e.open(t, boshconfig.Options{})
	got, err := s.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e.director.Requests(fakebosh.GetInfo) != 1 || e.uaa.Requests(fakeuaa.PostToken) != 1 {
		t.Errorf("/info %d, token %d", e.director.Requests(fakebosh.GetInfo), e.uaa.Requests(fakeuaa.PostToken))
	}
	data, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := boshconfig.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	lab, _ := f.Find("lab")
	if lab.AccessToken != got || lab.RefreshToken != refresh || lab.AccessTokenType != "bearer" || !strings.Contains(lab.CACert, "BEGIN CERTIFICATE") ||
		!strings.Contains(string(data), "kept: yes") {
		t.Fatalf("written back:\n%s", data)
	}
	if st, _ := os.Stat(e.path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(e.path)); len(entries) != 1 {
		t.Errorf("files beside the config: %v", entries)
	}
	// Now fresh: no further refresh.
	if again, err := s.Token(t.Context()); err != nil || again != got || e.uaa.Requests(fakeuaa.PostToken) != 1 {
		t.Errorf("second Token: %v, %d refreshes", err, e.uaa.Requests(fakeuaa.PostToken))
	}
	// A token the API rejects is renewed.
	if renewed, err := s.Renew(t.Context(), got); err != nil || renewed == got {
		t.Errorf("Renew: %v", err)
	}
}

// Failures say what to do.
func TestRefreshFailures(t *testing.T) {
	e := newEnv(t, "", "")
	e.write(t, e.userToken(fakeuaa.Expired()), "no-such-refresh-token")
	_, err := e.open(t, boshconfig.Options{}).Token(t.Context())
	if err == nil || !strings.Contains(err.Error(), "refused to refresh") || !strings.Contains(err.Error(), "bosh log-in") {
		t.Errorf("a revoked refresh token: %v", err)
	}
	e.write(t, e.userToken(fakeuaa.Expired()), `""`)
	_, err = e.open(t, boshconfig.Options{}).Token(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no refresh token") {
		t.Errorf("no refresh token: %v", err)
	}
	for name, o := range map[string]boshconfig.Options{
		"unknown alias":       {Path: e.path, Environment: "prod"},
		"no environment":      {Path: e.path},
		"no file, no client":  {Path: e.path + "-missing", Environment: "lab"},
		"client, no secret":   {Path: e.path, Environment: "lab", Client: "ci"},
		"BOSH_CA_CERT absent": {Path: e.path, Environment: "lab", CACert: "/nonexistent/ca.pem"},
	} {
		if _, err := boshconfig.Open(o); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

// BOSH_CLIENT and BOSH_CLIENT_SECRET get a client_credentials token, also
// for a director named by URL that the config does not know, with
// BOSH_CA_CERT as PEM or as a file; the config is not touched.
func TestClientCredentials(t *testing.T) {
	e := newEnv(t, "", "")
	e.uaa.AddClient("ci", "s3cret", fakeuaa.ScopeBoshAdmin)
	before, _ := os.ReadFile(e.path)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, e.director.CA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]boshconfig.Options{
		"alias":             {Environment: "lab"},
		"URL, CA as PEM":    {Environment: e.director.URL, CACert: string(e.director.CA.CertPEM())},
		"URL, CA as a file": {Environment: e.director.URL, CACert: caFile},
		"no config at all":  {Environment: e.director.URL, CACert: caFile, Path: e.path + "-missing"},
	} {
		o.Client, o.ClientSecret = "ci", "s3cret"
		if o.Path == "" {
			o.Path = e.path
		}
		s, err := boshconfig.Open(o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		token, err := s.Token(t.Context())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		claims, err := e.uaa.AccessClaims(token)
		if err != nil || claims["client_id"] != "ci" || claims["grant_type"] != "client_credentials" {
			t.Errorf("%s: claims %v, %v", name, claims, err)
		}
	}
	if after, _ := os.ReadFile(e.path); string(after) != string(before) {
		t.Error("a client's token was written to the config")
	}
	s, _ := boshconfig.Open(boshconfig.Options{Path: e.path, Environment: "lab", Client: "ci", ClientSecret: "wrong"})
	if _, err := s.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "BOSH_CLIENT_SECRET") {
		t.Errorf("a wrong secret: %v", err)
	}
}
