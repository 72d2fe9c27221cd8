// Package uaa verifies UAA access tokens the way the Cloud Controller does,
// locally against UAA's signing keys, so that a bad token is refused before
// anything is asked of the Cloud Controller.
package uaa

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// Audience is the aud every token must carry to be used with the Cloud
// Controller.
const Audience = "cloud_controller"

// AdminScope lets a token capture any app.
const AdminScope = "cloud_controller.admin"

// maxTokenLength bounds what is decoded before the signature is checked.
// UAA tokens are a few KiB even with many scopes.
const maxTokenLength = 64 << 10

// defaultKeyFetchTimeout applies when the caller's client has none: keys
// are fetched with the long-lived context, so without a client timeout a
// hanging UAA would hold a key fetch forever.
const defaultKeyFetchTimeout = 10 * time.Second

// Identity is who a verified access token speaks for.
type Identity struct {
	UserID    string    `json:"user_id,omitempty"`
	UserName  string    `json:"user_name,omitempty"`
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	GrantType string    `json:"grant_type"`
	Expiry    time.Time `json:"expiry"`
	// Token is the raw JWT, to call the Cloud Controller as the user. It
	// must never reach a log or a response.
	Token string `json:"-"`
}

// IsAdmin reports the cloud_controller.admin scope.
func (id Identity) IsAdmin() bool { return slices.Contains(id.Scopes, AdminScope) }

// Subject is the GUID the Cloud Controller knows the caller by: the user
// id, or the client id for a client_credentials token.
func (id Identity) Subject() string {
	if id.UserID != "" {
		return id.UserID
	}
	return id.ClientID
}

// String names the caller without the token, so %v is safe.
func (id Identity) String() string {
	if id.UserID != "" {
		return fmt.Sprintf("user %s (%s) via client %s", id.UserName, id.UserID, id.ClientID)
	}
	return "client " + id.ClientID
}

// LogValue keeps the token out of structured logs.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("user_id", id.UserID),
		slog.String("user_name", id.UserName),
		slog.String("client_id", id.ClientID),
		slog.String("grant_type", id.GrantType),
		slog.Bool("admin", id.IsAdmin()),
	)
}

// Verifier checks bearer tokens against one UAA.
type Verifier struct {
	issuer   string
	keysURL  string
	audience AudienceRule
	verifier *oidc.IDTokenVerifier
}

// AudienceRule is the rule a token's aud must meet: UAA derives aud from the
// client and the scopes' resources, so a service names what it takes.
type AudienceRule struct {
	// Name says what the rule wants, in messages: "cloud_controller".
	Name string
	// OK reports whether aud meets the rule.
	OK func(aud []string) bool
}

// CloudControllerAudience is the default: tokens meant for the Cloud
// Controller, as the Cloud Controller takes them.
var CloudControllerAudience = AudienceRule{Name: Audience, OK: func(aud []string) bool { return slices.Contains(aud, Audience) }}

// Option changes a default of New.
type Option func(*options)

type options struct {
	keys     *keySet
	audience AudienceRule
}

// KeyRefetchInterval sets the least time between two fetches of UAA's keys
// after a successful one (DefaultKeyRefetchInterval); 0 fetches for every
// token with an unknown key id.
func KeyRefetchInterval(d time.Duration) Option { return func(o *options) { o.keys.interval = d } }

// KeyRetry sets the wait after a failed fetch of UAA's keys: first after
// one failure, doubling with each further failure up to most
// (DefaultKeyRetryFirst, DefaultKeyRetryMost). Tokens that would fetch
// meanwhile get the failure again.
func KeyRetry(first, most time.Duration) Option {
	return func(o *options) { o.keys.retryFirst, o.keys.retryMost = first, most }
}

// WithAudience sets the audience rule (CloudControllerAudience by
// default), for the tokens of another service's UAA.
func WithAudience(a AudienceRule) Option { return func(o *options) { o.audience = a } }

// New builds a verifier for tokens of issuer (https://uaa.SYS/oauth/token).
// Keys come from keysURL, by default the issuer's scheme and host plus
// /token_keys, never from a token's jku. Keys are fetched with ctx's
// values but not its cancellation, also after New returns; a fetch is
// bounded by client's timeout (10 s if it has none). client should trust
// UAA's CA; nil means the system roots.
func New(ctx context.Context, issuer, keysURL string, client *http.Client, opts ...Option) (*Verifier, error) {
	iu, err := url.Parse(issuer)
	if err != nil || (iu.Scheme != "https" && iu.Scheme != "http") || iu.Host == "" {
		return nil, fmt.Errorf("UAA issuer %q is not an http(s) URL", issuer)
	}
	if keysURL == "" {
		keysURL = (&url.URL{Scheme: iu.Scheme, Host: iu.Host, Path: "/token_keys"}).String()
	} else if ku, err := url.Parse(keysURL); err != nil || (ku.Scheme != "https" && ku.Scheme != "http") || ku.Host == "" {
		return nil, fmt.Errorf("UAA keys URL %q is not an http(s) URL", keysURL)
	}
	if client == nil {
		client = &http.Client{}
	}
	if client.Timeout == 0 {
		c := *client
		c.Timeout = defaultKeyFetchTimeout
		client = &c
	}
	o := options{
		keys: &keySet{url: keysURL, client: client, ctx: context.WithoutCancel(ctx), interval: DefaultKeyRefetchInterval,
			retryFirst: DefaultKeyRetryFirst, retryMost: DefaultKeyRetryMost},
		audience: CloudControllerAudience,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Verifier{
		issuer:   issuer,
		keysURL:  keysURL,
		audience: o.audience,
		// go-oidc checks one client id; the rule, which may take several
		// audiences, is checked after it.
		verifier: oidc.NewVerifier(issuer, observedKeySet{o.keys}, &oidc.Config{
			SkipClientIDCheck:    true,
			SupportedSigningAlgs: []string{oidc.RS256},
		}),
	}, nil
}

// Issuer is the issuer tokens must have.
func (v *Verifier) Issuer() string { return v.issuer }

// Verify checks the value of an Authorization header and returns who the
// token speaks for. Every failure is a *problem.Error: 401 for the token's
// fault, 503 when UAA's keys cannot be fetched.
func (v *Verifier) Verify(ctx context.Context, authorization string) (*Identity, error) {
	raw, err := bearerToken(authorization)
	if err != nil {
		return nil, err
	}
	tok, err := parseUnverified(raw)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(tok.claims.JTI, "-r") {
		return nil, unauthorized("a refresh token cannot be used here; send an access token")
	}
	if tok.header.Alg != oidc.RS256 {
		return nil, unauthorized("token is signed with %s; only RS256 is accepted", printable(tok.header.Alg))
	}

	var seen verification
	idt, err := v.verifier.Verify(context.WithValue(ctx, verificationKey{}, &seen), raw)
	if err != nil {
		return nil, v.explain(ctx, err, &seen, tok)
	}

	if !v.audience.OK(idt.Audience) {
		return nil, unauthorized("token audience %s does not include %s", printable(strings.Join(idt.Audience, ",")), v.audience.Name)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		return nil, problem.Wrap(err, http.StatusUnauthorized, "token claims are malformed")
	}
	id := &Identity{
		UserID:    c.UserID,
		UserName:  c.UserName,
		ClientID:  c.ClientID,
		Scopes:    []string(c.Scope),
		GrantType: c.GrantType,
		Expiry:    idt.Expiry,
		Token:     raw,
	}
	if id.ClientID == "" {
		id.ClientID = c.CID
	}
	if id.Subject() == "" {
		return nil, unauthorized("token has neither user_id nor client_id")
	}
	return id, nil
}

// explain turns a go-oidc failure into the reason a user can act on.
// go-oidc flattens its errors into strings, so the reason comes from what
// the key set saw and from the (by then signature-checked) claims.
func (v *Verifier) explain(ctx context.Context, err error, seen *verification, tok *unverifiedToken) *problem.Error {
	switch {
	case seen.fetchErr != nil && ctx.Err() != nil:
		return problem.Wrap(ctx.Err(), http.StatusServiceUnavailable, "token verification was cancelled")
	case seen.fetchErr != nil:
		return problem.Wrap(fmt.Errorf("fetch %s: %w", v.keysURL, seen.fetchErr), http.StatusServiceUnavailable,
			"UAA unavailable: cannot fetch its token signing keys")
	case seen.cooling != nil:
		return problem.Wrap(err, http.StatusUnauthorized,
			"token is signed by key %s, which UAA did not serve when its keys were fetched %s ago; if UAA has just rotated its keys, retry in %s",
			printable(tok.header.Kid), seen.cooling.ago.Round(time.Second), (seen.cooling.interval - seen.cooling.ago + time.Second - 1).Truncate(time.Second))
	case !seen.signatureOK:
		return problem.Wrap(err, http.StatusUnauthorized,
			"token signature does not match any of UAA's signing keys (kid %s)", printable(tok.header.Kid))
	case tok.claims.Issuer != v.issuer:
		return problem.Wrap(err, http.StatusUnauthorized,
			"token issuer is %s, expected %q", printable(tok.claims.Issuer), v.issuer)
	case !v.audience.OK(tok.claims.Audience):
		return problem.Wrap(err, http.StatusUnauthorized,
			"token audience %s does not include %s", printable(strings.Join(tok.claims.Audience, ",")), v.audience.Name)
	}
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		if !tok.claims.HasExpiry {
			return problem.Wrap(err, http.StatusUnauthorized, "token has no expiry (exp claim)")
		}
		return problem.Wrap(err, http.StatusUnauthorized, "token expired at %s; log in again",
			expired.Expiry.UTC().Format(time.RFC3339))
	}
	return problem.Wrap(err, http.StatusUnauthorized, "token is not valid")
}

func unauthorized(format string, args ...any) *problem.Error {
	return problem.New(http.StatusUnauthorized, format, args...)
}

// bearerToken takes the token out of "bearer <token>" (scheme in any case,
// as the Cloud Controller accepts it).
func bearerToken(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", unauthorized(`missing Authorization header; send "Authorization: bearer <UAA access token>"`)
	}
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", unauthorized(`malformed Authorization header; expected "bearer <UAA access token>"`)
	}
	return token, nil
}

// unverifiedToken is what can be read from a JWT before its signature is
// checked: enough to refuse refresh tokens cheaply and to explain a failed
// verification. Nothing in it grants access. Claims of an unexpected type
// read as empty rather than failing: go-oidc judges them later.
type unverifiedToken struct {
	header struct{ Alg, Kid string }
	claims struct {
		JTI, Issuer string
		Audience    []string
		HasExpiry   bool
	}
}

// parseUnverified refuses anything that is not a compact JWS with JSON
// objects as header and claims: UAA's opaque tokens in particular.
func parseUnverified(raw string) (*unverifiedToken, error) {
	notJWT := func(why string) error {
		return unauthorized("token is not a JWT (%s); opaque tokens are not accepted, send the access token that `cf oauth-token` prints", why)
	}
	if len(raw) > maxTokenLength {
		return nil, notJWT(fmt.Sprintf("longer than %d bytes", maxTokenLength))
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, notJWT("it needs three dot-separated parts")
	}
	var header, body map[string]json.RawMessage
	if err := decodeSegment(parts[0], &header); err != nil || header == nil {
		return nil, notJWT("its header is not base64url-encoded JSON")
	}
	if err := decodeSegment(parts[1], &body); err != nil || body == nil {
		return nil, notJWT("its claims are not base64url-encoded JSON")
	}
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "=")); err != nil || parts[2] == "" {
		return nil, notJWT("its signature is not base64url-encoded")
	}
	var t unverifiedToken
	_ = json.Unmarshal(header["alg"], &t.header.Alg)
	_ = json.Unmarshal(header["kid"], &t.header.Kid)
	_ = json.Unmarshal(body["jti"], &t.claims.JTI)
	_ = json.Unmarshal(body["iss"], &t.claims.Issuer)
	var aud stringList
	if json.Unmarshal(body["aud"], &aud) == nil {
		t.claims.Audience = aud
	}
	_, t.claims.HasExpiry = body["exp"]
	return &t, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// claims are the UAA claims an Identity is made of.
type claims struct {
	UserID    string     `json:"user_id"`
	UserName  string     `json:"user_name"`
	ClientID  string     `json:"client_id"`
	CID       string     `json:"cid"`
	Scope     stringList `json:"scope"`
	GrantType string     `json:"grant_type"`
}

// stringList is a claim that UAA sends as an array but that other issuers
// (and RFC 8693's scope) send as one space-separated string.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// printable quotes untrusted text for a message, shortened so that a token
// stuffed into a claim cannot be echoed back in full.
func printable(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// verification records what the key set saw during one Verify call.
type verification struct {
	signatureOK bool
	fetchErr    error
	cooling     *coolingDown
}

type verificationKey struct{}

// observedKeySet tells a signature that matches no key apart from keys
// that could not be fetched, which go-oidc's error strings do not.
type observedKeySet struct{ keys *keySet }

func (k observedKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.keys.VerifySignature(ctx, jwt)
	if seen, ok := ctx.Value(verificationKey{}).(*verification); ok {
		var fe *fetchError
		switch {
		case err == nil:
			seen.signatureOK = true
		case errors.As(err, &fe):
			seen.fetchErr = fe.err
		default:
			errors.As(err, &seen.cooling)
		}
	}
	return payload, err
}
