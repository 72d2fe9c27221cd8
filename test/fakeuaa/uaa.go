// Package fakeuaa is a fake UAA: a real HTTPS server on loopback that mints
// real RS256 JWTs with UAA's claims (scopes, audience derived from them,
// refresh tokens ending -r), serves their keys on /token_keys and
// OpenID discovery, and answers the token endpoint's client_credentials
// and refresh_token grants as UAA does.
//
// The same fake is the UAA of Cloud Foundry (the default) and, with the
// DirectorUAA option, the BOSH director's UAA: the bosh CLI's client
// bosh_cli, and tokens checked as the director checks them.
package fakeuaa

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakeserver"
)

// Scopes that matter to pcap-server-api.
const (
	ScopeAdmin         = "cloud_controller.admin"
	ScopeAdminReadOnly = "cloud_controller.admin_read_only"
	ScopeGlobalAuditor = "cloud_controller.global_auditor"
	ScopeRead          = "cloud_controller.read"
	ScopeWrite         = "cloud_controller.write"
)

// Scopes of the BOSH director's UAA: admin of every deployment, read of
// every deployment, and the same per director (BoshDirectorAdmin) and per
// team (BoshTeamAdmin, BoshTeamRead).
const (
	ScopeBoshAdmin = "bosh.admin"
	ScopeBoshRead  = "bosh.read"
)

// BoshDirectorAdmin is bosh.<director uuid>.admin.
func BoshDirectorAdmin(uuid string) string { return "bosh." + uuid + ".admin" }

// BoshDirectorRead is bosh.<director uuid>.read.
func BoshDirectorRead(uuid string) string { return "bosh." + uuid + ".read" }

// BoshTeamAdmin is bosh.teams.<team>.admin.
func BoshTeamAdmin(team string) string { return "bosh.teams." + team + ".admin" }

// BoshTeamRead is bosh.teams.<team>.read.
func BoshTeamRead(team string) string { return "bosh.teams." + team + ".read" }

// BoshCLIClient is the OAuth client the bosh CLI logs users in with (no
// secret).
const BoshCLIClient = "bosh_cli"

// UAA endpoints as counted by (*UAA).Requests.
const (
	GetTokenKeys         = "GET /token_keys"
	GetOpenIDConfig      = "GET /.well-known/openid-configuration"
	GetTokenOpenIDConfig = "GET /oauth/token/.well-known/openid-configuration"
	PostToken            = "POST /oauth/token"
)

// DefaultUserScopes are the scopes of a token the cf CLI gets for an
// ordinary user.
func DefaultUserScopes() []string {
	return []string{"openid", ScopeRead, ScopeWrite, "uaa.user", "password.write"}
}

// DefaultClientScopes are the scopes of a client_credentials token.
func DefaultClientScopes() []string { return []string{ScopeRead, ScopeWrite} }

const accessTokenValidity = time.Hour

// SigningKey is an RSA key that tokens are signed with; UAA serves its
// public half on /token_keys when the key is one of UAA's.
type SigningKey struct {
	ID      string
	Private *rsa.PrivateKey
}

// NewSigningKey generates a 2048-bit key. A key made with this function and
// not added to a UAA is the "key UAA does not serve".
func NewSigningKey(kid string) (*SigningKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key %s: %w", kid, err)
	}
	return &SigningKey{ID: kid, Private: k}, nil
}

// UAA is a fake UAA server.
type UAA struct {
	// URL is the base URL, https://127.0.0.1:PORT (like https://uaa.SYS).
	URL string
	// Issuer is the iss of the tokens: URL + "/oauth/token".
	Issuer string
	// CA signed the server certificate.
	CA *fakeserver.CA

	tb  testing.TB
	srv *httptest.Server

	// audience decides whether a token's aud lets it be used with the
	// service this UAA serves (AccessClaims); audienceName says what it
	// wants.
	audience     func(aud []string) bool
	audienceName string

	mu          sync.Mutex
	keys        []*SigningKey // served, in order
	signing     *SigningKey   // default key for new tokens
	clients     map[string]client
	users       map[string]string    // user id -> password, for the password grant
	validity    time.Duration        // of access tokens from the token endpoint
	refresh     map[string]tokenSpec // refresh token -> what it was minted from
	unavailable int
	requests    map[string]int
}

// client is an OAuth client: its secret and, for the client_credentials
// grant, its authorities (the scopes of its tokens).
type client struct {
	secret      string
	authorities []string
}

// Option changes the fake at New.
type Option func(*settings)

type settings struct {
	listener     net.Listener
	audience     func([]string) bool
	audienceName string
	clients      map[string]client
}

// ServeOn serves on l (for example a listener opened in another network
// namespace) instead of a new loopback port. Its address must be
// 127.0.0.1, which the certificate names.
func ServeOn(l net.Listener) Option { return func(s *settings) { s.listener = l } }

// DirectorUAA makes the fake the BOSH director's UAA: it knows the bosh
// CLI's client (bosh_cli, no secret), and AccessClaims checks a token as
// the director does, whose token decoder (UAAIdentityProvider, a
// CF::UAA::TokenCoder without audience_ids) checks no audience at all:
// the scopes decide. (pcap-server-api is stricter; a fake must not be.)
func DirectorUAA() Option {
	return func(s *settings) {
		s.clients[BoshCLIClient] = client{}
		s.audienceName = "audience (any)"
		s.audience = func([]string) bool { return true }
	}
}

// New starts a fake UAA serving one key, "key-1", and knowing the client
// "cf" with an empty secret. It stops when the test ends.
func New(tb testing.TB, opts ...Option) *UAA {
	tb.Helper()
	set := settings{
		audienceName: "cloud_controller",
		audience:     func(aud []string) bool { return slices.Contains(aud, "cloud_controller") },
		clients:      map[string]client{"cf": {}},
	}
	for _, o := range opts {
		o(&set)
	}
	ca, err := fakeserver.NewCA("fake UAA CA")
	if err != nil {
		tb.Fatalf("fake UAA: %v", err)
	}
	tlsCfg, err := ca.ServerTLS("uaa")
	if err != nil {
		tb.Fatalf("fake UAA: %v", err)
	}
	key, err := NewSigningKey("key-1")
	if err != nil {
		tb.Fatalf("fake UAA: %v", err)
	}
	u := &UAA{
		CA:           ca,
		tb:           tb,
		audience:     set.audience,
		audienceName: set.audienceName,
		keys:         []*SigningKey{key},
		signing:      key,
		clients:      set.clients,
		users:        map[string]string{},
		validity:     accessTokenValidity,
		refresh:      map[string]tokenSpec{},
		requests:     map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(GetTokenKeys, u.serveTokenKeys)
	mux.HandleFunc(GetOpenIDConfig, u.serveOpenIDConfig)
	mux.HandleFunc(GetTokenOpenIDConfig, u.serveOpenIDConfig)
	mux.HandleFunc(PostToken, u.serveToken)
	u.srv = fakeserver.StartTLS(u.count(mux), tlsCfg, set.listener)
	u.URL = u.srv.URL
	u.Issuer = u.URL + "/oauth/token"
	tb.Cleanup(u.Close)
	return u
}

// Close stops the server; later requests fail to connect.
func (u *UAA) Close() { u.srv.Close() }

// Client is an HTTP client that trusts this UAA's CA only.
func (u *UAA) Client() *http.Client { return u.CA.Client() }

// TokenKeysURL is where the keys are served.
func (u *UAA) TokenKeysURL() string { return u.URL + "/token_keys" }

// SigningKey is the key new tokens are signed with by default.
func (u *UAA) SigningKey() *SigningKey {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.signing
}

// RotateKey generates a key, serves it next to the existing ones and signs
// new tokens with it from now on, like an operator adding a key to
// uaa.jwt.policy.keys and making it active.
func (u *UAA) RotateKey(kid string) *SigningKey {
	u.tb.Helper()
	k, err := NewSigningKey(kid)
	if err != nil {
		u.tb.Fatalf("fake UAA: %v", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.keys = append(u.keys, k)
	u.signing = k
	return k
}

// RemoveKey stops serving the key with this kid.
func (u *UAA) RemoveKey(kid string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.keys = slices.DeleteFunc(u.keys, func(k *SigningKey) bool { return k.ID == kid })
}

// AddClient registers an OAuth client for the refresh_token grant, and
// for the client_credentials grant with these authorities as its scopes.
func (u *UAA) AddClient(id, secret string, authorities ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clients[id] = client{secret: secret, authorities: slices.Clone(authorities)}
}

// AddUser lets userID (also its user name) log in with password through
// the password grant, as `cf auth` and `cf login` do.
func (u *UAA) AddUser(userID, password string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[userID] = password
}

// SetAccessTokenValidity sets how long the access tokens the token
// endpoint issues from now on live (an hour by default; UAA's cf client
// has 20 minutes), for tests about expiry.
func (u *UAA) SetAccessTokenValidity(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.validity = d
}

// SetUnavailable makes every endpoint answer status (for example 503) with
// a UAA error body; 0 restores normal service.
func (u *UAA) SetUnavailable(status int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.unavailable = status
}

// Requests is how many requests an endpoint (GetTokenKeys, ...) received.
func (u *UAA) Requests(endpoint string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests[endpoint]
}

// TotalRequests is how many requests UAA received on any path.
func (u *UAA) TotalRequests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.requests {
		n += c
	}
	return n
}

func (u *UAA) count(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		if pattern == "" {
			pattern = r.Method + " " + r.URL.Path
		}
		u.mu.Lock()
		u.requests[pattern]++
		status := u.unavailable
		u.mu.Unlock()
		if status != 0 {
			fakeserver.WriteJSON(w, status, map[string]string{"error": "server_error", "error_description": "UAA is unavailable"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// tokenKey is one entry of /token_keys in UAA's shape.
type tokenKey struct {
	Kty   string `json:"kty"`
	E     string `json:"e"`
	Use   string `json:"use"`
	Kid   string `json:"kid"`
	Alg   string `json:"alg"`
	Value string `json:"value"`
	N     string `json:"n"`
}

func (u *UAA) serveTokenKeys(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	keys := slices.Clone(u.keys)
	u.mu.Unlock()
	set := struct {
		Keys []tokenKey `json:"keys"`
	}{Keys: []tokenKey{}}
	for _, k := range keys {
		pub := &k.Private.PublicKey
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, tokenKey{
			Kty:   "RSA",
			E:     base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			Use:   "sig",
			Kid:   k.ID,
			Alg:   "RS256",
			Value: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
			N:     base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		})
	}
	body, err := json.Marshal(set)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_, _ = w.Write(body)
}

func (u *UAA) serveOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                u.Issuer,
		"authorization_endpoint":                u.URL + "/oauth/authorize",
		"token_endpoint":                        u.URL + "/oauth/token",
		"userinfo_endpoint":                     u.URL + "/userinfo",
		"jwks_uri":                              u.URL + "/token_keys",
		"end_session_endpoint":                  u.URL + "/logout.do",
		"scopes_supported":                      []string{"openid", "profile", "email", "phone", "roles", "user_attributes"},
		"response_types_supported":              []string{"code", "code id_token", "id_token", "token id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "HS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"grant_types_supported":                 []string{"client_credentials", "authorization_code", "password", "implicit", "refresh_token"},
		"claims_supported":                      []string{"sub", "user_name", "origin", "iss", "auth_time", "amr", "acr", "client_id", "aud", "zid", "grant_type", "user_id", "azp", "scope", "exp", "iat", "jti", "rev_sig", "cid", "given_name", "family_name", "phone_number", "email"},
	})
}

// serveToken implements the grants the cf CLI uses, password (cf auth,
// cf login) and refresh_token (its refresh of an expiring token), which
// the bosh CLI's refresh uses too, and the client_credentials grant of
// BOSH_CLIENT.
func (u *UAA) serveToken(w http.ResponseWriter, r *http.Request) {
	clientID, secret, ok := r.BasicAuth()
	u.mu.Lock()
	c, known := u.clients[clientID]
	u.mu.Unlock()
	if !ok || !known || secret != c.secret {
		w.Header().Set("WWW-Authenticate", `Basic realm="UAA/client", error="unauthorized", error_description="Bad credentials"`)
		fakeserver.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "Bad credentials"})
		return
	}
	if err := r.ParseForm(); err != nil {
		fakeserver.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	var spec tokenSpec
	var refreshToken string
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
		// A token for the client itself, its authorities as scopes, and
		// no refresh token, as UAA answers it.
		spec = tokenSpec{clientID: clientID, grantType: gt, scopes: slices.Clone(c.authorities)}
	case "refresh_token":
		refreshToken = r.PostForm.Get("refresh_token")
		u.mu.Lock()
		s, found := u.refresh[refreshToken]
		u.mu.Unlock()
		switch {
		case !found || s.clientID != clientID:
			fakeserver.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The token expired, was revoked, or the token ID is incorrect."})
			return
		case !s.expiry.After(time.Now()):
			fakeserver.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "Invalid refresh token (expired): " + s.jti})
			return
		}
		spec = s
	case "password":
		user := r.PostForm.Get("username")
		u.mu.Lock()
		password, found := u.users[user]
		u.mu.Unlock()
		if !found || user == "" || password != r.PostForm.Get("password") {
			fakeserver.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "Bad credentials"})
			return
		}
		spec = u.userSpec(user)
		spec.clientID = clientID
		refreshToken = u.rememberRefresh(spec)
	default:
		fakeserver.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "Unsupported grant type: " + gt})
		return
	}
	u.mu.Lock()
	validity := u.validity
	u.mu.Unlock()
	now := time.Now()
	access := tokenSpec{
		userID: spec.userID, userName: spec.userName, email: spec.email, origin: spec.origin,
		clientID: spec.clientID, grantType: spec.grantType, scopes: spec.scopes,
		issuer: u.Issuer, issuedAt: now, expiry: now.Add(validity),
		jti: randomHex(16), key: u.SigningKey(),
	}
	raw, err := access.sign()
	if err != nil {
		fakeserver.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": err.Error()})
		return
	}
	body := map[string]any{
		"access_token": raw,
		"token_type":   "bearer",
		"expires_in":   int(validity.Seconds()) - 1,
		"scope":        strings.Join(access.scopes, " "),
		"jti":          access.jti,
	}
	if refreshToken != "" {
		body["id_token"], body["refresh_token"] = nil, refreshToken
	}
	w.Header().Set("Cache-Control", "no-store")
	fakeserver.WriteJSON(w, http.StatusOK, body)
}

// TokenOption changes a token before it is signed.
type TokenOption func(*tokenSpec)

// Scopes replaces the scopes (and so the derived audience).
func Scopes(scopes ...string) TokenOption {
	return func(s *tokenSpec) { s.scopes = slices.Clone(scopes) }
}

// AddScopes adds scopes to the defaults.
func AddScopes(scopes ...string) TokenOption {
	return func(s *tokenSpec) { s.scopes = append(slices.Clone(s.scopes), scopes...) }
}

// Issuer sets iss.
func Issuer(iss string) TokenOption { return func(s *tokenSpec) { s.issuer = iss } }

// Audience sets aud instead of deriving it from the client and scopes.
func Audience(aud ...string) TokenOption {
	return func(s *tokenSpec) { s.audience = slices.Clone(aud) }
}

// ClientID sets client_id, cid and azp.
func ClientID(id string) TokenOption { return func(s *tokenSpec) { s.clientID = id } }

// UserName sets user_name.
func UserName(name string) TokenOption { return func(s *tokenSpec) { s.userName = name } }

// ExpiresAt sets exp.
func ExpiresAt(t time.Time) TokenOption { return func(s *tokenSpec) { s.expiry = t } }

// Expired makes a token that expired a minute ago (and was issued an hour
// before that).
func Expired() TokenOption {
	return func(s *tokenSpec) {
		s.expiry = time.Now().Add(-time.Minute).Truncate(time.Second)
		s.issuedAt = s.expiry.Add(-accessTokenValidity)
	}
}

// JTI sets jti.
func JTI(jti string) TokenOption { return func(s *tokenSpec) { s.jti = jti } }

// SignedBy signs with k (its ID becomes the header's kid).
func SignedBy(k *SigningKey) TokenOption { return func(s *tokenSpec) { s.key = k } }

// Claim sets any claim after all others; a nil value removes it.
func Claim(name string, value any) TokenOption {
	return func(s *tokenSpec) {
		if s.claims == nil {
			s.claims = map[string]any{}
		}
		s.claims[name] = value
	}
}

// Header sets any JOSE header field after the defaults; nil removes it.
func Header(name string, value any) TokenOption {
	return func(s *tokenSpec) {
		if s.header == nil {
			s.header = map[string]any{}
		}
		s.header[name] = value
	}
}

// UserToken mints an access token for a user, as the cf CLI gets it from a
// password login: client "cf", DefaultUserScopes, valid for an hour.
func (u *UAA) UserToken(userID string, opts ...TokenOption) string {
	u.tb.Helper()
	s := u.userSpec(userID)
	return u.mint(s, opts)
}

// ClientToken mints a client_credentials access token: no user_id,
// user_name, email or origin; sub is the client id.
func (u *UAA) ClientToken(clientID string, opts ...TokenOption) string {
	u.tb.Helper()
	now := time.Now()
	s := tokenSpec{
		clientID: clientID, grantType: "client_credentials", scopes: DefaultClientScopes(),
		issuer: u.Issuer, issuedAt: now, expiry: now.Add(accessTokenValidity),
		jti: randomHex(16), key: u.SigningKey(),
	}
	return u.mint(s, opts)
}

// RefreshToken mints a JWT refresh token (jti ends in "-r") for a user and
// remembers it, so POST /oauth/token can exchange it for an access token
// with the same user, client and scopes.
func (u *UAA) RefreshToken(userID string, opts ...TokenOption) string {
	u.tb.Helper()
	return u.rememberRefresh(u.userSpec(userID), opts...)
}

// rememberRefresh mints the refresh token of spec (jti ending "-r", valid
// for 30 days unless opts say otherwise) and remembers what it stands for.
func (u *UAA) rememberRefresh(s tokenSpec, opts ...TokenOption) string {
	s.jti += "-r"
	s.expiry = s.issuedAt.Add(30 * 24 * time.Hour)
	for _, o := range opts {
		o(&s)
	}
	raw, err := s.sign()
	if err != nil {
		u.tb.Errorf("fake UAA: %v", err)
		return ""
	}
	u.mu.Lock()
	u.refresh[raw] = s
	u.mu.Unlock()
	return raw
}

func (u *UAA) userSpec(userID string) tokenSpec {
	now := time.Now()
	return tokenSpec{
		userID: userID, userName: userID, email: userID + "@example.com", origin: "uaa",
		clientID: "cf", grantType: "password", scopes: DefaultUserScopes(),
		issuer: u.Issuer, issuedAt: now, expiry: now.Add(accessTokenValidity),
		jti: randomHex(16), key: u.SigningKey(),
	}
}

func (u *UAA) mint(s tokenSpec, opts []TokenOption) string {
	u.tb.Helper()
	for _, o := range opts {
		o(&s)
	}
	raw, err := s.sign()
	if err != nil {
		u.tb.Fatalf("fake UAA: %v", err)
	}
	return raw
}

// tokenSpec is what a token is minted from.
type tokenSpec struct {
	userID, userName, email, origin string // empty userID: client token
	clientID, grantType             string
	scopes                          []string
	audience                        []string // nil: derived
	issuer                          string
	issuedAt, expiry                time.Time
	jti                             string
	key                             *SigningKey
	claims, header                  map[string]any
}

// audienceOf is UAA's derivation: the client id plus each scope's resource,
// the part before its last dot (a scope without a dot, like openid, is its
// own resource).
func audienceOf(clientID string, scopes []string) []string {
	aud := []string{clientID}
	for _, sc := range scopes {
		r := sc
		if i := strings.LastIndexByte(sc, '.'); i > 0 {
			r = sc[:i]
		}
		if !slices.Contains(aud, r) {
			aud = append(aud, r)
		}
	}
	return aud
}

func (s tokenSpec) sign() (string, error) {
	if s.key == nil {
		return "", errors.New("token has no signing key")
	}
	aud := s.audience
	if aud == nil {
		aud = audienceOf(s.clientID, s.scopes)
	}
	jku := strings.TrimSuffix(s.issuer, "/oauth/token") + "/token_keys"
	header := map[string]any{"alg": "RS256", "jku": jku, "kid": s.key.ID, "typ": "JWT"}
	claims := map[string]any{
		"jti":        s.jti,
		"sub":        s.clientID,
		"scope":      s.scopes,
		"client_id":  s.clientID,
		"cid":        s.clientID,
		"azp":        s.clientID,
		"grant_type": s.grantType,
		"rev_sig":    randomHex(4),
		"iat":        s.issuedAt.Unix(),
		"exp":        s.expiry.Unix(),
		"iss":        s.issuer,
		"zid":        "uaa",
		"aud":        aud,
	}
	if s.userID != "" {
		claims["sub"] = s.userID
		claims["user_id"] = s.userID
		claims["user_name"] = s.userName
		claims["origin"] = s.origin
		claims["email"] = s.email
		claims["auth_time"] = s.issuedAt.Unix()
	}
	override(header, s.header)
	override(claims, s.claims)
	return signJWT(s.key.Private, header, claims)
}

func override(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// signJWT is RS256: RSASSA-PKCS1-v1_5 over SHA-256 of header.payload.
func signJWT(key *rsa.PrivateKey, header, claims map[string]any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encode JWT header: %w", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode JWT claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// AccessClaims checks a bearer token the way the Cloud Controller (or,
// with DirectorUAA, the BOSH director) does and returns its claims: RS256
// signed by a key UAA serves, this issuer, an audience the service takes,
// not expired, not a refresh token.
func (u *UAA) AccessClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if header.Alg != "RS256" {
		return nil, fmt.Errorf("alg %q", header.Alg)
	}
	u.mu.Lock()
	i := slices.IndexFunc(u.keys, func(k *SigningKey) bool { return k.ID == header.Kid })
	var key *SigningKey
	if i >= 0 {
		key = u.keys[i]
	}
	u.mu.Unlock()
	if key == nil {
		return nil, fmt.Errorf("unknown kid %q", header.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&key.Private.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if iss, _ := claims["iss"].(string); iss != u.Issuer {
		return nil, fmt.Errorf("issuer %q", iss)
	}
	if jti, _ := claims["jti"].(string); strings.HasSuffix(jti, "-r") {
		return nil, errors.New("refresh token")
	}
	if !u.audience(ClaimStrings(claims["aud"])) {
		return nil, fmt.Errorf("audience %v names no %s", ClaimStrings(claims["aud"]), u.audienceName)
	}
	exp, ok := claims["exp"].(json.Number)
	if !ok {
		return nil, errors.New("no exp")
	}
	if e, err := exp.Int64(); err != nil || time.Unix(e, 0).Before(time.Now()) {
		return nil, errors.New("expired")
	}
	return claims, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// ClaimStrings reads a claim that is a string or an array of strings.
func ClaimStrings(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
