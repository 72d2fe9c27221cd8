package cfconfig_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
)

func TestPath(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("skipped: the table below is for Unix; pathFor's Windows rules are tested in TestPathWindows")
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CF_HOME": "/cfhome", "HOME": "/home/u"}, "/cfhome/.cf/config.json"},
		{map[string]string{"HOME": "/home/u", "USERPROFILE": "/profile"}, "/home/u/.cf/config.json"},
	} {
		got, err := cfconfig.Path(func(k string) string { return tc.env[k] })
		if err != nil || got != filepath.FromSlash(tc.want) {
			t.Errorf("Path(%v) = %q, %v; want %q", tc.env, got, err, tc.want)
		}
	}
	if _, err := cfconfig.Path(func(k string) string { return map[string]string{"USERPROFILE": "/p"}[k] }); err == nil {
		t.Error("Path on Unix took USERPROFILE")
	}
}

func TestLoadDefaultUsesCFHome(t *testing.T) {
	path := writeConfig(t, cfConfigJSON(t, "https://login.sys.example.com", "bearer x", "r"), 0o600)
	t.Setenv("CF_HOME", filepath.Dir(filepath.Dir(path)))
	store, err := cfconfig.LoadDefault(cfconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if store.Path() != path {
		t.Errorf("path = %q, want %q", store.Path(), path)
	}
}

func TestLoadParsesTheCFCLIFile(t *testing.T) {
	path := writeConfig(t, cfConfigJSON(t, "https://login.sys.example.com", "bearer eyJ.a.b", "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := cfconfig.Config{
		ConfigVersion:         4,
		Target:                "https://api.sys.example.com",
		AuthorizationEndpoint: "https://login.sys.example.com",
		UaaEndpoint:           "https://uaa.sys.example.com",
		AccessToken:           "bearer eyJ.a.b",
		RefreshToken:          "refresh-1",
		UAAOAuthClient:        "cf",
		OrganizationFields:    cfconfig.OrganizationFields{GUID: "org-guid-1", Name: "acme"},
		SpaceFields:           cfconfig.SpaceFields{GUID: "space-guid-1", Name: "dev"},
	}
	if got := store.Config(); got != want {
		t.Errorf("config =\n%+v\nwant\n%+v", got, want)
	}
	target, err := store.Target()
	if err != nil || target != "https://api.sys.example.com" {
		t.Errorf("Target = %q, %v", target, err)
	}
	space, err := store.Space()
	if err != nil || space != want.SpaceFields {
		t.Errorf("Space = %+v, %v", space, err)
	}
}

func TestParseDefaultsTheUAAClient(t *testing.T) {
	cfg, err := cfconfig.Parse([]byte(`{"ConfigVersion":4,"UAAOAuthClient":"","UAAOAuthClientSecret":"stale"}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UAAOAuthClient != "cf" || cfg.UAAOAuthClientSecret != "" {
		t.Errorf("client = %q:%q, want cf with an empty secret", cfg.UAAOAuthClient, cfg.UAAOAuthClientSecret)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Run("no file", func(t *testing.T) {
		_, err := cfconfig.Load(filepath.Join(t.TempDir(), "missing.json"), cfconfig.Options{})
		if !errors.Is(err, cfconfig.ErrNotLoggedIn) || !strings.Contains(err.Error(), "run `cf login`") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("other version", func(t *testing.T) {
		path := writeConfig(t, `{"ConfigVersion": 3, "AccessToken": "bearer x"}`, 0o600)
		_, err := cfconfig.Load(path, cfconfig.Options{})
		if !errors.Is(err, cfconfig.ErrNotLoggedIn) || !strings.Contains(err.Error(), "ConfigVersion 3") {
			t.Errorf("err = %v", err)
		}
	})
	for name, content := range map[string]string{
		"empty":        ``,
		"not json":     `ConfigVersion=4`,
		"array":        `[{"ConfigVersion":4}]`,
		"wrong type":   `{"ConfigVersion":4,"SSLDisabled":"yes"}`,
		"trailing":     `{"ConfigVersion":4} {}`,
		"cut":          `{"ConfigVersion":4,"Target":"https://api`,
		"space string": `{"ConfigVersion":4,"SpaceFields":"dev"}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := writeConfig(t, content, 0o600)
			_, err := cfconfig.Load(path, cfconfig.Options{})
			if err == nil || errors.Is(err, cfconfig.ErrNotLoggedIn) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v; want a parse error naming the file", err)
			}
		})
	}
}

func TestTargetAndSpaceErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		content    string
		targetErr  error
		spaceErr   error
		tokenErrIs error
	}{
		{"no target", `{"ConfigVersion":4}`, cfconfig.ErrNoTarget, cfconfig.ErrNotLoggedIn, cfconfig.ErrNotLoggedIn},
		{"not logged in", `{"ConfigVersion":4,"Target":"https://api.x"}`, cfconfig.ErrNotLoggedIn, cfconfig.ErrNotLoggedIn, cfconfig.ErrNotLoggedIn},
		{"no space", `{"ConfigVersion":4,"Target":"https://api.x","AccessToken":"bearer x","SpaceFields":{"GUID":"","Name":""}}`, nil, cfconfig.ErrNoSpace, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := cfconfig.Load(writeConfig(t, tc.content, 0o600), cfconfig.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.Target(); !errors.Is(err, tc.targetErr) {
				t.Errorf("Target err = %v, want %v", err, tc.targetErr)
			}
			if _, err := store.Space(); !errors.Is(err, tc.spaceErr) {
				t.Errorf("Space err = %v, want %v", err, tc.spaceErr)
			}
			if tc.tokenErrIs != nil {
				if _, err := store.Token(t.Context()); !errors.Is(err, tc.tokenErrIs) {
					t.Errorf("Token err = %v, want %v", err, tc.tokenErrIs)
				}
			}
		})
	}
}

func TestTokenStillValidIsNotRefreshed(t *testing.T) {
	uaa := newFakeUAA(t)
	token := jwt(t, time.Now().Add(10*time.Minute), "jti-1")
	content := cfConfigJSON(t, uaa.srv.URL, "bearer "+token, "refresh-1")
	path := writeConfig(t, content, 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Token(t.Context())
	if err != nil || got != token {
		t.Fatalf("Token = %q, %v; want the stored token without bearer", got, err)
	}
	if n := len(uaa.calls()); n != 0 {
		t.Errorf("UAA called %d times", n)
	}
	if after, _ := os.ReadFile(path); string(after) != content {
		t.Error("config file changed")
	}
}

func TestTokenExpiringIsRefreshedAndSaved(t *testing.T) {
	uaa := newFakeUAA(t)
	now := time.Now()
	fresh := jwt(t, now.Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	old := jwt(t, now.Add(30*time.Second), "jti-1")
	content := cfConfigJSON(t, uaa.srv.URL+"/", "bearer "+old, "refresh-1")
	path := writeConfig(t, content, 0o640)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}

	got, err := store.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got != fresh {
		t.Errorf("Token returned the old token")
	}
	calls := uaa.calls()
	if len(calls) != 1 {
		t.Fatalf("UAA calls = %d, want 1", len(calls))
	}
	req := calls[0]
	if req.Path != "/oauth/token" || req.Method != http.MethodPost || req.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("request %s %s (%s)", req.Method, req.Path, req.ContentType)
	}
	if req.Client != "cf" || req.Secret != "" {
		t.Errorf("basic auth %q:%q, want cf:", req.Client, req.Secret)
	}
	wantForm := map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {"refresh-1"}, "scope": {""}}
	if !reflect.DeepEqual(map[string][]string(req.Form), wantForm) {
		t.Errorf("form = %v, want %v", req.Form, wantForm)
	}

	// Written back: new tokens, everything else as it was and where it was.
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantFile := strings.Replace(content, quote(t, "bearer "+old), quote(t, "bearer "+fresh), 1)
	wantFile = strings.Replace(wantFile, `"refresh-1"`, `"refresh-2"`, 1)
	if string(after) != wantFile {
		t.Errorf("config after refresh:\n%s\nwant:\n%s", after, wantFile)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o640 {
		t.Errorf("permissions = %v, want 0640", perm)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("files next to the config: %v", entries)
	}

	// The new token is good for ten minutes: no second refresh.
	again, err := store.Token(t.Context())
	if err != nil || again != fresh || len(uaa.calls()) != 1 {
		t.Errorf("second Token = %v, UAA calls %d", err, len(uaa.calls()))
	}
	// And a new process reading the file finds the new token fresh too.
	reread, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := reread.Token(t.Context()); err != nil || tok != fresh || len(uaa.calls()) != 1 {
		t.Errorf("reread Token = %v, UAA calls %d", err, len(uaa.calls()))
	}
}

func TestRefreshWithoutNewRefreshTokenKeepsTheOld(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, ""))
	})
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now().Add(-time.Hour), "jti-1"), "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := readConfigFile(t, path)
	if cfg.RefreshToken != "refresh-1" || cfg.AccessToken != "bearer "+fresh {
		t.Errorf("saved tokens %q / %q", cfg.AccessToken, cfg.RefreshToken)
	}
}

func readConfigFile(t *testing.T, path string) cfconfig.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cfconfig.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRefreshRefusedByUAA(t *testing.T) {
	uaa := newFakeUAA(t)
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":             "invalid_token",
			"error_description": "Invalid refresh token (expired): refresh-1 expired at Mon Jan 01 00:00:00 UTC 2024",
		})
	})
	content := cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now().Add(-time.Minute), "jti-1"), "refresh-1")
	path := writeConfig(t, content, 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Token(t.Context())
	var refreshErr *cfconfig.RefreshError
	if !errors.As(err, &refreshErr) {
		t.Fatalf("err = %v, want a RefreshError", err)
	}
	if refreshErr.StatusCode != 401 || refreshErr.Code != "invalid_token" {
		t.Errorf("RefreshError = %+v", refreshErr)
	}
	for _, part := range []string{"Invalid refresh token (expired)", "run `cf login`"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != content {
		t.Error("config file changed after a refused refresh")
	}
}

func TestRefreshUAAUnavailable(t *testing.T) {
	uaa := newFakeUAA(t)
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
	})
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Token(t.Context())
	var refreshErr *cfconfig.RefreshError
	if err == nil || errors.As(err, &refreshErr) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "upstream connect error") {
		t.Errorf("err = %v", err)
	}
}

func TestRefreshBadReplies(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        `<html>login</html>`,
		"no access token": `{"token_type":"bearer","expires_in":599}`,
	} {
		t.Run(name, func(t *testing.T) {
			uaa := newFakeUAA(t)
			uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(body))
			})
			content := cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1")
			path := writeConfig(t, content, 0o600)
			store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.Token(t.Context()); err == nil {
				t.Error("no error")
			}
			if after, _ := os.ReadFile(path); string(after) != content {
				t.Error("config file changed")
			}
		})
	}
}

func TestCannotRefreshWithoutRefreshToken(t *testing.T) {
	uaa := newFakeUAA(t)
	expired := "bearer " + jwt(t, time.Now().Add(-time.Hour), "jti-1")
	for _, tc := range []struct {
		name, grant, want string
	}{
		{"password", "password", "run `cf login`"},
		{"old cf CLI", "", "run `cf login`"},
		{"client credentials without secret", "client_credentials", "cf auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := `{"ConfigVersion":4,"Target":"https://api.x","AuthorizationEndpoint":` + quote(t, uaa.srv.URL) +
				`,"AccessToken":` + quote(t, expired) + `,"RefreshToken":"","UAAGrantType":` + quote(t, tc.grant) + `}`
			store, err := cfconfig.Load(writeConfig(t, content, 0o600), cfconfig.Options{HTTPClient: uaa.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = store.Token(t.Context())
			if !errors.Is(err, cfconfig.ErrCannotRefresh) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrCannotRefresh mentioning %q", err, tc.want)
			}
		})
	}
	if n := len(uaa.calls()); n != 0 {
		t.Errorf("UAA called %d times", n)
	}
}

func TestClientCredentialsAreRenewedWithTheSecret(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, ""))
	})
	content := `{"ConfigVersion":4,"Target":"https://api.x","AuthorizationEndpoint":` + quote(t, uaa.srv.URL) +
		`,"AccessToken":` + quote(t, "bearer "+jwt(t, time.Now(), "jti-1")) +
		`,"RefreshToken":"","UAAGrantType":"client_credentials","UAAOAuthClient":"pcap-bot","UAAOAuthClientSecret":"s3cret"}`
	path := writeConfig(t, content, 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Token(t.Context())
	if err != nil || got != fresh {
		t.Fatalf("Token = %v", err)
	}
	req := uaa.calls()[0]
	if req.Client != "pcap-bot" || req.Secret != "s3cret" {
		t.Errorf("basic auth %q:%q", req.Client, req.Secret)
	}
	if want := map[string][]string{"grant_type": {"client_credentials"}}; !reflect.DeepEqual(map[string][]string(req.Form), want) {
		t.Errorf("form = %v, want %v", req.Form, want)
	}
	if cfg := readConfigFile(t, path); cfg.AccessToken != "bearer "+fresh || cfg.RefreshToken != "" {
		t.Errorf("saved %q / %q", cfg.AccessToken, cfg.RefreshToken)
	}
}

func TestSSLDisabledAppliesToUAAOnly(t *testing.T) {
	uaa := newFakeUAA(t)
	expired := "bearer " + jwt(t, time.Now(), "jti-1")
	// A client that does not trust the fake UAA's self-signed certificate.
	injected := &http.Client{Transport: &http.Transport{}}

	for _, sslDisabled := range []bool{false, true} {
		content := `{"ConfigVersion":4,"Target":"https://api.x","AuthorizationEndpoint":` + quote(t, uaa.srv.URL) +
			`,"AccessToken":` + quote(t, expired) + `,"RefreshToken":"r","SSLDisabled":` + map[bool]string{false: "false", true: "true"}[sslDisabled] + `}`
		store, err := cfconfig.Load(writeConfig(t, content, 0o600), cfconfig.Options{HTTPClient: injected})
		if err != nil {
			t.Fatal(err)
		}
		_, err = store.Token(t.Context())
		if sslDisabled && err != nil {
			t.Errorf("SSLDisabled: %v", err)
		}
		if !sslDisabled && (err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("certificate verified: err = %v, want a certificate error", err)
		}
	}
	if tr := injected.Transport.(*http.Transport); tr.TLSClientConfig != nil && tr.TLSClientConfig.InsecureSkipVerify {
		t.Error("the injected client was changed")
	}
}

// Token (of an expiring token) and Renew (of a rejected one) both take a
// token the cf CLI wrote meanwhile rather than refresh.
func TestTokenWrittenByTheCFCLIMeanwhileIsUsed(t *testing.T) {
	for name, get := range map[string]func(*cfconfig.Store, string) (string, error){
		"Token": func(s *cfconfig.Store, _ string) (string, error) { return s.Token(t.Context()) },
		"Renew": func(s *cfconfig.Store, old string) (string, error) { return s.Renew(t.Context(), old) },
	} {
		t.Run(name, func(t *testing.T) {
			uaa := newFakeUAA(t)
			old := jwt(t, time.Now().Add(10*time.Second), "jti-1")
			path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+old, "refresh-1"), 0o600)
			store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			// `cf login` in another terminal.
			newer := jwt(t, time.Now().Add(20*time.Minute), "jti-9")
			if err := os.WriteFile(path, []byte(cfConfigJSON(t, uaa.srv.URL, "bearer "+newer, "refresh-9")), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := get(store, old)
			if err != nil || got != newer {
				t.Errorf("%s = %v; want the token the cf CLI wrote", name, err)
			}
			if n := len(uaa.calls()); n != 0 {
				t.Errorf("UAA called %d times", n)
			}
		})
	}
}

// A token the Cloud Controller rejected before its expiry (revoked, or
// signed by a rotated key) is refreshed at UAA although it looks fresh, and
// only once: asking again with the same rejected token gets the new one.
func TestRenewRefreshesARejectedTokenOnce(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	rejected := jwt(t, time.Now().Add(10*time.Minute), "jti-1")
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+rejected, "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.Token(t.Context()); err != nil || got != rejected || len(uaa.calls()) != 0 {
		t.Fatalf("Token = %v, UAA calls %d; want the stored token, no refresh", err, len(uaa.calls()))
	}
	got, err := store.Renew(t.Context(), "bearer "+rejected)
	if err != nil || got != fresh {
		t.Fatalf("Renew = %v; want the refreshed token", err)
	}
	if n := len(uaa.calls()); n != 1 {
		t.Fatalf("UAA calls = %d, want 1", n)
	}
	if saved := readConfigFile(t, path); saved.AccessToken != "bearer "+fresh || saved.RefreshToken != "refresh-2" {
		t.Errorf("config after Renew: %q, %q", saved.AccessToken, saved.RefreshToken)
	}
	// A second caller that saw the same rejection gets the new token.
	if again, err := store.Renew(t.Context(), rejected); err != nil || again != fresh || len(uaa.calls()) != 1 {
		t.Errorf("second Renew = %v, UAA calls %d", err, len(uaa.calls()))
	}
	if tok, err := store.Token(t.Context()); err != nil || tok != fresh {
		t.Errorf("Token after Renew = %v", err)
	}
}

func TestRenewWithoutRefreshTokenSaysLogIn(t *testing.T) {
	uaa := newFakeUAA(t)
	rejected := jwt(t, time.Now().Add(10*time.Minute), "jti-1")
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+rejected, ""), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Renew(t.Context(), rejected); !errors.Is(err, cfconfig.ErrCannotRefresh) || !strings.Contains(err.Error(), "cf login") {
		t.Errorf("Renew err = %v, want ErrCannotRefresh telling to cf login", err)
	}
}

func TestWriteBackYieldsToAConcurrentCFCLI(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	content := cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1")
	path := writeConfig(t, content, 0o600)
	theirs := cfConfigJSON(t, uaa.srv.URL, "bearer theirs", "their-refresh")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		// The cf CLI saves its own refresh while ours is in flight.
		if err := os.WriteFile(path, []byte(theirs), 0o600); err != nil {
			t.Error(err)
		}
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.Token(t.Context()); err != nil || got != fresh {
		t.Fatalf("Token = %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != theirs {
		t.Errorf("our write-back replaced the cf CLI's:\n%s", after)
	}
}

func TestWriteBackThroughSymlink(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	real := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1"), 0o600)
	link := filepath.Join(t.TempDir(), "config.json")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	store, err := cfconfig.Load(link, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced by a file: %v", err)
	}
	if cfg := readConfigFile(t, real); cfg.AccessToken != "bearer "+fresh {
		t.Errorf("target not updated: %q", cfg.AccessToken)
	}
}

func TestOpaqueTokenUsesExpiresIn(t *testing.T) {
	uaa := newFakeUAA(t)
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse("opaque-2", "refresh-2"))
	})
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer opaque-1", "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := store.Token(t.Context()); err != nil || got != "opaque-2" {
			t.Fatalf("Token = %q, %v", got, err)
		}
	}
	if n := len(uaa.calls()); n != 1 {
		t.Errorf("UAA calls = %d, want 1 (expires_in 599 s)", n)
	}
}

func TestRefreshMarginFollowsTheClock(t *testing.T) {
	uaa := newFakeUAA(t)
	now := time.Now()
	exp := now.Add(5 * time.Minute)
	clock := now
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, exp, "jti-1"), "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client(), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	clock = exp.Add(-cfconfig.RefreshMargin - time.Second)
	if _, err := store.Token(t.Context()); err != nil || len(uaa.calls()) != 0 {
		t.Fatalf("61 s before exp: err %v, UAA calls %d", err, len(uaa.calls()))
	}
	clock = exp.Add(-cfconfig.RefreshMargin + time.Second)
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(jwt(t, exp.Add(10*time.Minute), "jti-2"), "refresh-2"))
	})
	if _, err := store.Token(t.Context()); err != nil || len(uaa.calls()) != 1 {
		t.Fatalf("59 s before exp: err %v, UAA calls %d", err, len(uaa.calls()))
	}
}

func TestConcurrentTokenCallsRefreshOnce(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got, err := store.Token(t.Context()); err != nil || got != fresh {
				t.Errorf("Token = %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(uaa.calls()); n != 1 {
		t.Errorf("UAA calls = %d, want 1", n)
	}
}

func TestTokenHonoursContext(t *testing.T) {
	uaa := newFakeUAA(t)
	release := make(chan struct{})
	defer close(release)
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) { <-release })
	path := writeConfig(t, cfConfigJSON(t, uaa.srv.URL, "bearer "+jwt(t, time.Now(), "jti-1"), "refresh-1"), 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := store.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

// Unknown keys survive byte for byte, including numbers beyond float64
// precision and nested objects.
func TestWriteBackKeepsUnknownKeys(t *testing.T) {
	uaa := newFakeUAA(t)
	fresh := jwt(t, time.Now().Add(10*time.Minute), "jti-2")
	uaa.setRespond(func(w http.ResponseWriter, _ uaaRequest) {
		writeJSON(w, http.StatusOK, tokenResponse(fresh, "refresh-2"))
	})
	content := `{"Zeta":{"b":[1,2,{"c":null}],"a":"x"},"ConfigVersion":4,"AccessToken":` + quote(t, "bearer "+jwt(t, time.Now(), "jti-1")) +
		`,"Big":12345678901234567890.5e3,"Esc":"\u003chtml\u003e","AuthorizationEndpoint":` + quote(t, uaa.srv.URL) + `,"RefreshToken":"refresh-1"}`
	path := writeConfig(t, content, 0o600)
	store, err := cfconfig.Load(path, cfconfig.Options{HTTPClient: uaa.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var before, got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(content), &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(after, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Zeta", "ConfigVersion", "Big", "Esc", "AuthorizationEndpoint"} {
		if !bytes.Equal(compact(t, before[key]), compact(t, got[key])) {
			t.Errorf("%s: %s, want %s", key, got[key], before[key])
		}
	}
	if !strings.Contains(string(after), `12345678901234567890.5e3`) || !strings.Contains(string(after), `\u003chtml\u003e`) {
		t.Errorf("values rewritten:\n%s", after)
	}
	keyOrder := func(data []byte) []string {
		dec := json.NewDecoder(bytes.NewReader(data))
		var keys []string
		dec.Token()
		for dec.More() {
			tok, _ := dec.Token()
			keys = append(keys, tok.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		return keys
	}
	if k1, k2 := keyOrder([]byte(content)), keyOrder(after); !reflect.DeepEqual(k1, k2) {
		t.Errorf("key order %q, want %q", k2, k1)
	}
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
