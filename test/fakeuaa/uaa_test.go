package fakeuaa_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// decodeJWT splits a token and checks its RS256 signature against pub.
func decodeJWT(t *testing.T, raw string, pub *rsa.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	return header, claims
}

func stringClaims(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

func getJSON(t *testing.T, c *http.Client, u string, v any) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	return resp
}

func TestUserTokenHasUAAClaims(t *testing.T) {
	u := fakeuaa.New(t)
	raw := u.UserToken("user-1", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))
	header, claims := decodeJWT(t, raw, &u.SigningKey().Private.PublicKey)

	if header["alg"] != "RS256" || header["typ"] != "JWT" || header["kid"] != "key-1" || header["jku"] != u.URL+"/token_keys" {
		t.Errorf("header = %v", header)
	}
	for k, want := range map[string]any{
		"sub": "user-1", "user_id": "user-1", "user_name": "user-1", "origin": "uaa", "email": "user-1@example.com",
		"client_id": "cf", "cid": "cf", "azp": "cf", "grant_type": "password", "iss": u.Issuer, "zid": "uaa",
	} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	if jti, _ := claims["jti"].(string); jti == "" || strings.HasSuffix(jti, "-r") {
		t.Errorf("jti = %q", jti)
	}
	if !slices.Contains(stringClaims(claims["scope"]), fakeuaa.ScopeAdmin) {
		t.Errorf("scope = %v", claims["scope"])
	}
	aud := stringClaims(claims["aud"])
	for _, want := range []string{"cf", "cloud_controller", "uaa", "password", "openid"} {
		if !slices.Contains(aud, want) {
			t.Errorf("aud %v lacks %s", aud, want)
		}
	}
	if slices.Contains(aud, "cloud_controller.admin") {
		t.Errorf("aud %v holds a scope instead of its resource", aud)
	}
	exp, iat := claims["exp"].(float64), claims["iat"].(float64)
	if d := time.Unix(int64(exp), 0).Sub(time.Now()); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("token valid for %v", d)
	}
	if exp-iat != 3600 {
		t.Errorf("exp-iat = %v", exp-iat)
	}
}

func TestTokenOptions(t *testing.T) {
	u := fakeuaa.New(t)
	pub := &u.SigningKey().Private.PublicKey

	_, c := decodeJWT(t, u.ClientToken("my-client"), pub)
	if _, ok := c["user_id"]; ok || c["sub"] != "my-client" || c["grant_type"] != "client_credentials" {
		t.Errorf("client token claims = %v", c)
	}

	_, c = decodeJWT(t, u.UserToken("u", fakeuaa.Expired()), pub)
	if exp := time.Unix(int64(c["exp"].(float64)), 0); !exp.Before(time.Now()) {
		t.Errorf("expired token expires at %v", exp)
	}

	_, c = decodeJWT(t, u.UserToken("u", fakeuaa.Issuer("https://other/oauth/token"), fakeuaa.Audience("foo")), pub)
	if c["iss"] != "https://other/oauth/token" || !slices.Equal(stringClaims(c["aud"]), []string{"foo"}) {
		t.Errorf("claims = %v", c)
	}

	_, c = decodeJWT(t, u.UserToken("u", fakeuaa.Claim("email", nil), fakeuaa.Claim("extra", "x")), pub)
	if _, ok := c["email"]; ok || c["extra"] != "x" {
		t.Errorf("claims = %v", c)
	}

	_, c = decodeJWT(t, u.RefreshToken("u"), pub)
	if !strings.HasSuffix(c["jti"].(string), "-r") {
		t.Errorf("refresh jti = %v", c["jti"])
	}

	other, err := fakeuaa.NewSigningKey("key-1")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := decodeJWT(t, u.UserToken("u", fakeuaa.SignedBy(other)), &other.Private.PublicKey)
	if h["kid"] != "key-1" {
		t.Errorf("kid = %v", h["kid"])
	}
	h, _ = decodeJWT(t, u.UserToken("u", fakeuaa.Header("kid", "nope")), pub)
	if h["kid"] != "nope" {
		t.Errorf("kid = %v", h["kid"])
	}
}

func TestTokenKeysServesUAAShapeWithRotation(t *testing.T) {
	u := fakeuaa.New(t)
	c := u.Client()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	resp := getJSON(t, c, u.TokenKeysURL(), &set)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Error("no ETag")
	}
	if len(set.Keys) != 1 {
		t.Fatalf("keys = %v", set.Keys)
	}
	k := set.Keys[0]
	for f, want := range map[string]string{"kty": "RSA", "e": "AQAB", "use": "sig", "kid": "key-1", "alg": "RS256"} {
		if k[f] != want {
			t.Errorf("%s = %q, want %q", f, k[f], want)
		}
	}
	n, err := base64.RawURLEncoding.DecodeString(k["n"])
	if err != nil || new(big.Int).SetBytes(n).Cmp(u.SigningKey().Private.N) != 0 {
		t.Errorf("n does not match the signing key (%v)", err)
	}
	block, _ := pem.Decode([]byte(k["value"]))
	if block == nil {
		t.Fatalf("value is not PEM: %q", k["value"])
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !pub.(*rsa.PublicKey).Equal(&u.SigningKey().Private.PublicKey) {
		t.Errorf("value does not match the signing key (%v)", err)
	}

	req, _ := http.NewRequest(http.MethodGet, u.TokenKeysURL(), nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET = %d, want 304", resp.StatusCode)
	}

	k2 := u.RotateKey("key-2")
	if u.SigningKey() != k2 {
		t.Error("rotated key does not sign new tokens")
	}
	getJSON(t, c, u.TokenKeysURL(), &set)
	if len(set.Keys) != 2 || set.Keys[1]["kid"] != "key-2" {
		t.Errorf("after rotation keys = %v", set.Keys)
	}
	u.RemoveKey("key-1")
	getJSON(t, c, u.TokenKeysURL(), &set)
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != "key-2" {
		t.Errorf("after removal keys = %v", set.Keys)
	}
	if got := u.Requests(fakeuaa.GetTokenKeys); got != 4 {
		t.Errorf("token_keys requests = %d, want 4", got)
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	u := fakeuaa.New(t)
	for _, path := range []string{"/.well-known/openid-configuration", "/oauth/token/.well-known/openid-configuration"} {
		var doc map[string]any
		getJSON(t, u.Client(), u.URL+path, &doc)
		if doc["issuer"] != u.URL+"/oauth/token" || doc["jwks_uri"] != u.URL+"/token_keys" {
			t.Errorf("%s = %v", path, doc)
		}
	}
}

func TestRefreshGrant(t *testing.T) {
	u := fakeuaa.New(t)
	refresh := u.RefreshToken("user-1", fakeuaa.Scopes("openid", fakeuaa.ScopeRead))

	post := func(client, secret, token string) (int, map[string]any) {
		return postToken(t, u, client, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "scope": {""}})
	}

	status, body := post("cf", "", refresh)
	if status != http.StatusOK {
		t.Fatalf("refresh = %d %v", status, body)
	}
	if body["token_type"] != "bearer" || body["refresh_token"] != refresh || body["scope"] != "openid cloud_controller.read" ||
		body["expires_in"].(float64) < 3000 || body["jti"] == "" {
		t.Errorf("refresh answer = %v", body)
	}
	_, claims := decodeJWT(t, body["access_token"].(string), &u.SigningKey().Private.PublicKey)
	if claims["user_id"] != "user-1" || claims["jti"] != body["jti"] {
		t.Errorf("refreshed claims = %v", claims)
	}

	if status, body = post("cf", "", "not-a-token"); status != http.StatusUnauthorized || body["error"] != "invalid_token" {
		t.Errorf("bad refresh token = %d %v", status, body)
	}
	if status, body = post("cf", "", u.RefreshToken("user-1", fakeuaa.Expired())); status != http.StatusUnauthorized || body["error"] != "invalid_token" {
		t.Errorf("expired refresh token = %d %v", status, body)
	}
	if status, body = post("cf", "wrong", refresh); status != http.StatusUnauthorized || body["error"] != "unauthorized" {
		t.Errorf("bad client secret = %d %v", status, body)
	}
	if got := u.Requests(fakeuaa.PostToken); got != 4 {
		t.Errorf("token requests = %d, want 4", got)
	}
}

func TestUAAUnavailable(t *testing.T) {
	u := fakeuaa.New(t)
	u.SetUnavailable(http.StatusServiceUnavailable)
	resp := getJSON(t, u.Client(), u.TokenKeysURL(), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status = %d", resp.StatusCode)
	}
	u.SetUnavailable(0)
	if resp := getJSON(t, u.Client(), u.TokenKeysURL(), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("status after recovery = %d", resp.StatusCode)
	}
}

// cf auth USER PASS: the password grant to the cf client (Basic "cf:"),
// answered with an access token of the set validity and a refresh token
// the refresh grant accepts.
func TestPasswordGrant(t *testing.T) {
	u := fakeuaa.New(t)
	u.AddUser("dev-user", "s3cret")
	u.SetAccessTokenValidity(30 * time.Second)
	post := func(form url.Values) (int, map[string]any) { return postToken(t, u, "cf", "", form) }
	status, body := post(url.Values{"grant_type": {"password"}, "username": {"dev-user"}, "password": {"s3cret"}})
	if status != http.StatusOK || body["token_type"] != "bearer" || body["expires_in"] != float64(29) {
		t.Fatalf("login = %d %v", status, body)
	}
	_, claims := decodeJWT(t, body["access_token"].(string), &u.SigningKey().Private.PublicKey)
	if claims["user_name"] != "dev-user" || claims["grant_type"] != "password" || claims["client_id"] != "cf" {
		t.Errorf("claims = %v", claims)
	}
	if exp := time.Unix(int64(claims["exp"].(float64)), 0); time.Until(exp) > 31*time.Second {
		t.Errorf("token expires at %v, want within 30s", exp)
	}
	refresh := body["refresh_token"].(string)
	if status, body = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "scope": {""}}); status != http.StatusOK {
		t.Fatalf("refresh of the login's token = %d %v", status, body)
	}
	for _, bad := range []url.Values{
		{"grant_type": {"password"}, "username": {"dev-user"}, "password": {"wrong"}},
		{"grant_type": {"password"}, "username": {"nobody"}, "password": {""}},
	} {
		if status, body = post(bad); status != http.StatusUnauthorized || body["error"] != "unauthorized" {
			t.Errorf("%v = %d %v", bad, status, body)
		}
	}
}

// postToken posts form to the token endpoint as client and decodes the
// answer.
func postToken(t *testing.T, u *fakeuaa.UAA, client, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	resp, err := u.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// The client_credentials grant gives the client a token of its own, its
// authorities as scopes, its id and their resources as audience, and no
// refresh token.
func TestClientCredentialsGrant(t *testing.T) {
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	u.AddClient("ops", "s3cret", fakeuaa.ScopeBoshAdmin)
	status, body := postToken(t, u, "ops", "s3cret", url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusOK || body["refresh_token"] != nil || body["scope"] != "bosh.admin" {
		t.Fatalf("client_credentials = %d %v", status, body)
	}
	_, claims := decodeJWT(t, body["access_token"].(string), &u.SigningKey().Private.PublicKey)
	if claims["grant_type"] != "client_credentials" || claims["client_id"] != "ops" || claims["user_id"] != nil ||
		!slices.Equal(stringClaims(claims["aud"]), []string{"ops", "bosh"}) {
		t.Errorf("claims %v", claims)
	}
	if status, body = postToken(t, u, "ops", "wrong", url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Errorf("bad secret = %d %v", status, body)
	}
}

// As the director's UAA the fake knows bosh_cli and takes its tokens
// whatever their audience, as the director does; another UAA's are not
// among them.
func TestDirectorUAA(t *testing.T) {
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	refresh := u.RefreshToken("ops-user", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes("openid", fakeuaa.ScopeBoshAdmin))
	status, body := postToken(t, u, fakeuaa.BoshCLIClient, "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status != http.StatusOK {
		t.Fatalf("bosh_cli refresh = %d %v", status, body)
	}
	for name, c := range map[string]struct {
		token string
		ok    bool
	}{
		"bosh_cli user": {body["access_token"].(string), true},
		"team admin":    {u.ClientToken("ci", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("dev"))), true},
		"any audience":  {u.UserToken("user-1"), true},
		"another UAA's": {fakeuaa.New(t).UserToken("user-1"), false},
	} {
		if _, err := u.AccessClaims(c.token); (err == nil) != c.ok {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := fakeuaa.New(t).AccessClaims(u.UserToken("ops-user", fakeuaa.ClientID(fakeuaa.BoshCLIClient), fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))); err == nil {
		t.Error("a Cloud Foundry UAA took another UAA's token")
	}
}
