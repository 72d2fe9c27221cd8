package uaa_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func newVerifier(t *testing.T, u *fakeuaa.UAA) *uaa.Verifier {
	t.Helper()
	v, err := uaa.New(t.Context(), u.Issuer, "", u.Client())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantProblem checks err is a *problem.Error with status and a detail
// containing every part, and that the detail does not echo the token.
func wantProblem(t *testing.T, err error, token string, status int, parts ...string) {
	t.Helper()
	var p *problem.Error
	if !errors.As(err, &p) {
		t.Fatalf("err = %v (%T), want *problem.Error", err, err)
	}
	t.Logf("%d %s (cause: %v)", p.Status, p.Detail, p.Err)
	if p.Status != status {
		t.Errorf("status = %d, want %d (%s)", p.Status, status, p.Detail)
	}
	for _, s := range parts {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q lacks %q", p.Detail, s)
		}
	}
	if sig := token[strings.LastIndexByte(token, '.')+1:]; len(sig) > 8 && strings.Contains(p.Detail, sig) {
		t.Errorf("detail %q contains the token", p.Detail)
	}
}

func TestVerifyUserToken(t *testing.T) {
	u := fakeuaa.New(t)
	v := newVerifier(t, u)
	raw := u.UserToken("user-guid", fakeuaa.UserName("alice"))

	for _, header := range []string{"bearer " + raw, "Bearer " + raw, "BEARER   " + raw + " "} {
		id, err := v.Verify(t.Context(), header)
		if err != nil {
			t.Fatalf("Verify(%.10q...): %v", header, err)
		}
		if id.UserID != "user-guid" || id.UserName != "alice" || id.ClientID != "cf" || id.GrantType != "password" ||
			id.Token != raw || id.IsAdmin() || id.Subject() != "user-guid" {
			t.Errorf("identity = %+v", id)
		}
		if len(id.Scopes) != len(fakeuaa.DefaultUserScopes()) {
			t.Errorf("scopes = %v", id.Scopes)
		}
		if d := time.Until(id.Expiry); d < 50*time.Minute || d > time.Hour {
			t.Errorf("expiry in %v", d)
		}
	}
	if got := u.Requests(fakeuaa.GetTokenKeys); got != 1 {
		t.Errorf("token_keys fetched %d times for three verifications, want 1", got)
	}

	id, err := v.Verify(t.Context(), "bearer "+u.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin)))
	if err != nil || !id.IsAdmin() {
		t.Errorf("admin token: %+v, %v", id, err)
	}
}

func TestVerifyClientToken(t *testing.T) {
	u := fakeuaa.New(t)
	v := newVerifier(t, u)
	id, err := v.Verify(t.Context(), "bearer "+u.ClientToken("pipeline"))
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "" || id.ClientID != "pipeline" || id.Subject() != "pipeline" || id.GrantType != "client_credentials" {
		t.Errorf("identity = %+v", id)
	}
}

func TestVerifyRefusals(t *testing.T) {
	u := fakeuaa.New(t)
	stranger, err := fakeuaa.NewSigningKey("key-1")
	if err != nil {
		t.Fatal(err)
	}
	expired := u.UserToken("u", fakeuaa.Expired())
	expiredAt := expiryOf(t, expired).UTC().Format(time.RFC3339)

	for _, tc := range []struct {
		name, header string
		status       int
		detail       []string
		keyFetches   int // at most
	}{
		{"missing header", "", 401, []string{"missing Authorization header"}, 0},
		{"basic scheme", "Basic Y2Y6", 401, []string{"malformed Authorization header"}, 0},
		{"scheme only", "bearer", 401, []string{"malformed Authorization header"}, 0},
		{"empty token", "bearer   ", 401, []string{"malformed Authorization header"}, 0},
		{"opaque token", "bearer 5b0d4ea8d5b44ccb8a3f0e0b3d62e0a6", 401, []string{"not a JWT", "opaque"}, 0},
		{"two parts", "bearer abc.def", 401, []string{"not a JWT"}, 0},
		{"not base64", "bearer a*b.c*d.e*f", 401, []string{"not a JWT"}, 0},
		{"not json", "bearer YWJj.ZGVm.Z2hp", 401, []string{"not a JWT"}, 0},
		{"refresh token", "bearer " + u.RefreshToken("u"), 401, []string{"refresh token"}, 0},
		{"HS256", "bearer " + u.UserToken("u", fakeuaa.Header("alg", "HS256")), 401, []string{`"HS256"`, "RS256"}, 0},
		{"wrong signing key", "bearer " + u.UserToken("u", fakeuaa.SignedBy(stranger)), 401, []string{"signature", `"key-1"`}, 1},
		{"unknown kid", "bearer " + u.UserToken("u", fakeuaa.Header("kid", "key-9")), 401, []string{"signature", `"key-9"`}, 1},
		{"wrong issuer", "bearer " + u.UserToken("u", fakeuaa.Issuer("https://uaa.other.example.com/oauth/token")), 401,
			[]string{`issuer is "https://uaa.other.example.com/oauth/token"`, fmt.Sprintf("expected %q", u.Issuer)}, 1},
		{"wrong audience", "bearer " + u.UserToken("u", fakeuaa.Audience("cf", "uaa")), 401, []string{`"cf,uaa"`, "does not include cloud_controller"}, 1},
		{"expired", "bearer " + expired, 401, []string{"expired at " + expiredAt}, 1},
		{"no expiry", "bearer " + u.UserToken("u", fakeuaa.Claim("exp", nil)), 401, []string{"no expiry"}, 1},
		{"no subject", "bearer " + u.ClientToken("x", fakeuaa.Claim("client_id", nil), fakeuaa.Claim("cid", nil)), 401, []string{"neither user_id nor client_id"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, u) // fresh key cache per case
			before := u.Requests(fakeuaa.GetTokenKeys)
			id, err := v.Verify(t.Context(), tc.header)
			if id != nil {
				t.Errorf("identity %+v for a refused token", id)
			}
			wantProblem(t, err, tc.header+".", tc.status, tc.detail...)
			if got := u.Requests(fakeuaa.GetTokenKeys) - before; got > tc.keyFetches {
				t.Errorf("token_keys fetched %d times, want at most %d", got, tc.keyFetches)
			}
		})
	}
}

func expiryOf(t *testing.T, raw string) time.Time {
	t.Helper()
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Exp int64 }
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Exp, 0)
}

func TestKeysNeverComeFromJKU(t *testing.T) {
	u := fakeuaa.New(t)
	evil := fakeuaa.New(t)
	v := newVerifier(t, u)
	forged := evil.UserToken("u", fakeuaa.Issuer(u.Issuer))
	_, err := v.Verify(t.Context(), "bearer "+forged)
	wantProblem(t, err, forged, 401, "signature")
	if n := evil.TotalRequests(); n != 0 {
		t.Errorf("the token's jku was fetched %d times", n)
	}
}

// A rotated key is fetched for the first token signed with it, unless the
// keys were fetched within the refetch interval; then it is refused, with
// a message that says to retry, until the interval has passed.
func TestKeyRotation(t *testing.T) {
	u := fakeuaa.New(t)
	const interval = 300 * time.Millisecond
	v, err := uaa.New(t.Context(), u.Issuer, "", u.Client(), uaa.KeyRefetchInterval(interval))
	if err != nil {
		t.Fatal(err)
	}
	old := u.UserToken("u")
	// The keys are fetched during this Verify, between asking and
	// fetched: the refusal is due while the interval since asking runs,
	// the new fetch once it has passed since fetched.
	asking := time.Now()
	if _, err := v.Verify(t.Context(), "bearer "+old); err != nil {
		t.Fatal(err)
	}
	fetched := time.Now()
	u.RotateKey("key-2")
	rotated := u.UserToken("u")
	if _, err := v.Verify(t.Context(), "bearer "+rotated); time.Since(asking) < interval {
		wantProblem(t, err, rotated, 401, `"key-2"`, "retry in")
	}
	time.Sleep(time.Until(fetched.Add(interval))) // the interval is what is tested
	id, err := v.Verify(t.Context(), "bearer "+rotated)
	if err != nil {
		t.Fatalf("token signed by the new key, after the interval: %v", err)
	}
	if id.Token != rotated {
		t.Error("wrong token in identity")
	}
	if got := u.Requests(fakeuaa.GetTokenKeys); got != 2 {
		t.Errorf("token_keys fetched %d times, want 2 (initial, then for the unknown kid)", got)
	}
	if _, err := v.Verify(t.Context(), "bearer "+old); err != nil {
		t.Errorf("token of the old, still served key: %v", err)
	}
	if got := u.Requests(fakeuaa.GetTokenKeys); got != 2 {
		t.Errorf("token_keys fetched %d times after verifying a known kid, want 2", got)
	}

	// Once UAA stops serving the old key, its tokens stop verifying.
	u.RemoveKey("key-1")
	v = newVerifier(t, u)
	_, err = v.Verify(t.Context(), "bearer "+old)
	wantProblem(t, err, old, 401, "signature")
}

// Forged tokens naming made-up keys do not each cost a fetch of UAA's
// keys: within the refetch interval they are refused at once.
func TestForgedTokensDoNotEachFetchKeys(t *testing.T) {
	u := fakeuaa.New(t)
	v := newVerifier(t, u)
	real := u.UserToken("u")
	if _, err := v.Verify(t.Context(), "bearer "+real); err != nil {
		t.Fatal(err)
	}
	forger, err := fakeuaa.NewSigningKey("forged")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 50 {
		forged := u.UserToken("u", fakeuaa.SignedBy(forger), fakeuaa.Header("kid", fmt.Sprintf("forged-%d", i)), fakeuaa.AddScopes(fakeuaa.ScopeAdmin))
		_, err = v.Verify(t.Context(), "bearer "+forged)
		wantProblem(t, err, forged, 401, fmt.Sprintf(`"forged-%d"`, i))
	}
	if time.Since(start) >= uaa.DefaultKeyRefetchInterval {
		t.Skipf("skipped: the forged tokens took %s, longer than the refetch interval, on a slow machine", time.Since(start))
	}
	if got := u.Requests(fakeuaa.GetTokenKeys); got != 1 {
		t.Errorf("token_keys fetched %d times for one real and 50 forged tokens, want 1", got)
	}
	if _, err := v.Verify(t.Context(), "bearer "+real); err != nil {
		t.Errorf("the real token after the forged ones: %v", err)
	}
}

// Forged tokens with made-up key ids do not make the API hammer a UAA
// that answers errors (or has not answered yet): after a failed fetch the
// next waits at least a second, and tokens meanwhile get the failure
// again.
func TestForgedTokensDoNotHammerAFailingUAA(t *testing.T) {
	u := fakeuaa.New(t)
	u.SetUnavailable(http.StatusInternalServerError)
	v := newVerifier(t, u)
	forger, err := fakeuaa.NewSigningKey("forged")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 50 {
		forged := u.UserToken("u", fakeuaa.SignedBy(forger), fakeuaa.Header("kid", fmt.Sprintf("forged-%d", i)))
		_, err := v.Verify(t.Context(), "bearer "+forged)
		var p *problem.Error
		if !errors.As(err, &p) || p.Status != http.StatusServiceUnavailable {
			t.Fatalf("forged token %d: %v, want 503", i, err)
		}
	}
	took := time.Since(start)
	// Fetches are at least a second apart.
	most := 1 + int(took/time.Second)
	if got := u.Requests(fakeuaa.GetTokenKeys); got > most {
		t.Errorf("token_keys fetched %d times for 50 forged tokens in %s, want at most %d", got, took.Round(time.Millisecond), most)
	}
	t.Logf("50 forged tokens in %s: %d fetches", took.Round(time.Millisecond), u.Requests(fakeuaa.GetTokenKeys))
}

func TestUAAUnavailable(t *testing.T) {
	u := fakeuaa.New(t)
	raw := u.UserToken("u")

	u.SetUnavailable(http.StatusServiceUnavailable)
	const retry = 300 * time.Millisecond
	v, err := uaa.New(t.Context(), u.Issuer, "", u.Client(), uaa.KeyRetry(retry, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The fetch fails during this Verify, between asking and failed.
	asking := time.Now()
	_, err = v.Verify(t.Context(), "bearer "+raw)
	failed := time.Now()
	wantProblem(t, err, raw, 503, "UAA unavailable")

	// Within the retry wait the failure is answered again, and UAA is
	// not asked.
	u.SetUnavailable(0)
	_, err = v.Verify(t.Context(), "bearer "+raw)
	if time.Since(asking) < retry {
		wantProblem(t, err, raw, 503, "UAA unavailable")
		if got := u.Requests(fakeuaa.GetTokenKeys); got != 1 {
			t.Errorf("token_keys fetched %d times within the retry wait, want 1", got)
		}
	}
	time.Sleep(time.Until(failed.Add(retry))) // the wait is what is tested
	if _, err := v.Verify(t.Context(), "bearer "+raw); err != nil {
		t.Errorf("after UAA recovered: %v", err)
	}

	u.Close()
	v = newVerifier(t, u)
	_, err = v.Verify(t.Context(), "bearer "+raw)
	wantProblem(t, err, raw, 503, "UAA unavailable")
	var p *problem.Error
	if errors.As(err, &p) && p.Err == nil {
		t.Error("no cause kept for the logs")
	}
}

// The verifier outlives the context of the request that first fetched
// keys, and even a cancelled construction context does not stop later
// fetches (go-oidc keeps only its values).
func TestVerifierSurvivesCancelledContexts(t *testing.T) {
	u := fakeuaa.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	v, err := uaa.New(ctx, u.Issuer, u.TokenKeysURL(), u.Client(), uaa.KeyRefetchInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, reqCancel := context.WithCancel(t.Context())
	if _, err := v.Verify(reqCtx, "bearer "+u.UserToken("u")); err != nil {
		t.Fatal(err)
	}
	reqCancel()
	cancel()
	u.RotateKey("key-2")
	if _, err := v.Verify(t.Context(), "bearer "+u.UserToken("u")); err != nil {
		t.Errorf("after cancellations: %v", err)
	}
}

func TestVerifyCancelledRequest(t *testing.T) {
	u := fakeuaa.New(t)
	v := newVerifier(t, u)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	raw := u.UserToken("u")
	_, err := v.Verify(ctx, "bearer "+raw)
	wantProblem(t, err, raw, 503)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct{ issuer, keys string }{
		{"", ""},
		{"uaa.example.com/oauth/token", ""},
		{"ftp://uaa.example.com/oauth/token", ""},
		{"https://uaa.example.com/oauth/token", "token_keys"},
	} {
		if _, err := uaa.New(t.Context(), tc.issuer, tc.keys, nil); err == nil {
			t.Errorf("New(%q, %q) accepted", tc.issuer, tc.keys)
		}
	}
	v, err := uaa.New(t.Context(), "https://uaa.example.com/oauth/token", "", nil)
	if err != nil || v.Issuer() != "https://uaa.example.com/oauth/token" {
		t.Errorf("New: %v, %v", v, err)
	}
}

func TestIdentityNeverShowsToken(t *testing.T) {
	id := &uaa.Identity{UserID: "g", UserName: "alice", ClientID: "cf", Token: "SECRET.TOKEN.VALUE"}
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "identity", id)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "identity", id)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "identity", *id)
	for what, s := range map[string]string{"json": string(b), "slog": buf.String(), "%v": fmt.Sprintf("%v %+v %v %+v", id, id, *id, *id)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("%s shows the token: %s", what, s)
		}
		if !strings.Contains(s, "alice") {
			t.Errorf("%s does not name the user: %s", what, s)
		}
	}
}

// Another service's UAA is verified with the same code and that
// service's audience rule: the rule decides, whatever go-oidc's single
// client id would have said.
func TestVerifyWithAudienceRule(t *testing.T) {
	u := fakeuaa.New(t)
	rule := uaa.AudienceRule{Name: "bosh_cli or a bosh resource", OK: func(aud []string) bool {
		return slices.Contains(aud, "bosh_cli") || slices.Contains(aud, "bosh.teams.dev")
	}}
	v, err := uaa.New(t.Context(), u.Issuer, "", u.Client(), uaa.WithAudience(rule))
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{
		u.UserToken("ops", fakeuaa.ClientID("bosh_cli"), fakeuaa.Scopes("openid")),
		u.ClientToken("ci", fakeuaa.Scopes("bosh.teams.dev.admin")),
	} {
		if _, err := v.Verify(t.Context(), "bearer "+token); err != nil {
			t.Errorf("a token for the rule: %v", err)
		}
	}
	cf := u.UserToken("dev")
	_, err = v.Verify(t.Context(), "bearer "+cf)
	wantProblem(t, err, cf, 401, "does not include bosh_cli or a bosh resource")
}
