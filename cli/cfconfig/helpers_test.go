package cfconfig_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// signingKey signs the test tokens: RS256 like UAA's, although the code
// under test only reads exp.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

// jwt returns a UAA-shaped access token for user alice expiring at exp.
func jwt(t testing.TB, exp time.Time, jti string) string {
	t.Helper()
	header := map[string]any{"alg": "RS256", "jku": "https://uaa.sys.example.com/token_keys", "kid": "key-1", "typ": "JWT"}
	claims := map[string]any{
		"jti":        jti,
		"sub":        "user-guid-1",
		"scope":      []string{"openid", "cloud_controller.read", "cloud_controller.write"},
		"client_id":  "cf",
		"cid":        "cf",
		"azp":        "cf",
		"grant_type": "password",
		"user_id":    "user-guid-1",
		"origin":     "uaa",
		"user_name":  "alice",
		"email":      "alice@example.com",
		"iat":        exp.Add(-10 * time.Minute).Unix(),
		"exp":        exp.Unix(),
		"iss":        "https://uaa.sys.example.com/oauth/token",
		"zid":        "uaa",
		"aud":        []string{"cloud_controller", "openid", "cf"},
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signingInput := enc(header) + "." + enc(claims)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signingKey(), crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// fakeUAA is a minimal UAA token endpoint: POST /oauth/token with form
// grant_type=refresh_token or client_credentials and HTTP Basic client
// credentials, answering like UAA does.
type fakeUAA struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []uaaRequest
	// respond builds the answer; the default issues a fresh token.
	respond func(w http.ResponseWriter, r uaaRequest)
}

type uaaRequest struct {
	Form         url.Values
	Client       string
	Secret       string
	BasicOK      bool
	ContentType  string
	Method, Path string
}

func newFakeUAA(t *testing.T) *fakeUAA {
	t.Helper()
	u := &fakeUAA{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.handle))
	// The SSLDisabled test makes clients reject the certificate on purpose.
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUAA) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/oauth/token" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "error_description": "Request method '" + r.Method + "' not supported"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	client, secret, basicOK := r.BasicAuth()
	req := uaaRequest{Form: r.PostForm, Client: client, Secret: secret, BasicOK: basicOK, ContentType: r.Header.Get("Content-Type"), Method: r.Method, Path: r.URL.Path}
	u.mu.Lock()
	u.requests = append(u.requests, req)
	respond := u.respond
	u.mu.Unlock()

	if !basicOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="UAA/client", error="unauthorized", error_description="Full authentication is required to access this resource"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "Full authentication is required to access this resource"})
		return
	}
	if respond != nil {
		respond(w, req)
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse("fresh-access", "fresh-refresh"))
}

func (u *fakeUAA) setRespond(f func(w http.ResponseWriter, r uaaRequest)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.respond = f
}

func (u *fakeUAA) calls() []uaaRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]uaaRequest(nil), u.requests...)
}

func tokenResponse(access, refresh string) map[string]any {
	reply := map[string]any{
		"access_token": access,
		"token_type":   "bearer",
		"expires_in":   599,
		"scope":        "openid cloud_controller.read cloud_controller.write",
		"jti":          "jti-new",
	}
	if refresh != "" {
		reply["refresh_token"] = refresh
	}
	return reply
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// cfConfigJSON is a config.json as cf CLI v8 writes it, with keys this
// package does not know about.
func cfConfigJSON(t testing.TB, authEndpoint, accessToken, refreshToken string) string {
	t.Helper()
	doc := `{
  "ConfigVersion": 4,
  "Target": "https://api.sys.example.com",
  "APIVersion": "3.180.0",
  "AuthorizationEndpoint": ` + quote(t, authEndpoint) + `,
  "DopplerEndPoint": "wss://doppler.sys.example.com:443",
  "UaaEndpoint": "https://uaa.sys.example.com",
  "RoutingAPIEndpoint": "https://api.sys.example.com/routing",
  "AccessToken": ` + quote(t, accessToken) + `,
  "SSHOAuthClient": "ssh-proxy",
  "UAAOAuthClient": "cf",
  "UAAOAuthClientSecret": "",
  "UAAGrantType": "",
  "RefreshToken": ` + quote(t, refreshToken) + `,
  "OrganizationFields": {
    "GUID": "org-guid-1",
    "Name": "acme"
  },
  "SpaceFields": {
    "GUID": "space-guid-1",
    "Name": "dev",
    "AllowSSH": false
  },
  "SSLDisabled": false,
  "AsyncTimeout": 0,
  "Trace": "",
  "ColorEnabled": "",
  "Locale": "",
  "PluginRepos": [
    {
      "Name": "CF-Community",
      "URL": "https://plugins.cloudfoundry.org"
    }
  ],
  "MinCLIVersion": "7.0.0",
  "MinRecommendedCLIVersion": "7.0.0",
  "CFOnK8s": {
    "Enabled": false,
    "AuthInfo": ""
  },
  "Huge": 12345678901234567890
}`
	return doc
}

func quote(t testing.TB, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeConfig writes a config.json under a fresh CF_HOME and returns its
// path.
func writeConfig(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ".cf")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's permissions pass through the umask.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}
