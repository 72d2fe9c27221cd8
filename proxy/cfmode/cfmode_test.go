package cfmode

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func config(t *testing.T, cc *fakecc.CloudController, u *fakeuaa.UAA) *apiconfig.Config {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, pem []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg := apiconfig.Default()
	cfg.CloudController = &apiconfig.CloudController{URL: cc.URL, CA: write("cc.crt", cc.CA.CertPEM())}
	cfg.UAA = apiconfig.UAA{CA: write("uaa.crt", u.CA.CertPEM())}
	return &cfg
}

// Whoever answers in the Cloud Controller's place must not choose the UAA
// whose keys sign the tokens: with the Cloud Controller unverified, the
// issuer is not discovered at all.
func TestIssuerIsNeverDiscoveredUnverified(t *testing.T) {
	u := fakeuaa.New(t)
	cc := fakecc.New(t, u)
	log := slog.New(slog.DiscardHandler)

	cfg := config(t, cc, u)
	cfg.CloudController.SkipTLSVerify = true
	_, err := New(t.Context(), t.Context(), cfg, log, nil)
	if err == nil || !strings.Contains(err.Error(), "uaa.issuer") {
		t.Fatalf("New with skip_tls_verify and no issuer: %v", err)
	}
	if n := cc.Requests(fakecc.GetRoot); n != 0 {
		t.Errorf("the Cloud Controller's root was fetched %d times over an unverified connection", n)
	}

	// Verified, the root document names UAA.
	a, err := New(t.Context(), t.Context(), config(t, cc, u), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.verifier.Issuer(); got != u.Issuer {
		t.Errorf("discovered issuer %q, want %q", got, u.Issuer)
	}
	// With the issuer set, skip_tls_verify affects the Cloud Controller only.
	cfg = config(t, cc, u)
	cfg.CloudController.SkipTLSVerify = true
	cfg.UAA.Issuer = u.Issuer
	if _, err := New(t.Context(), t.Context(), cfg, log, nil); err != nil {
		t.Errorf("skip_tls_verify with uaa.issuer: %v", err)
	}
}

// authorization.follow_ssh_policy reaches the resolver; the default
// follows the policy.
func TestFollowSSHPolicyIsConfigured(t *testing.T) {
	u := fakeuaa.New(t)
	cc := fakecc.New(t, u)
	log := slog.New(slog.DiscardHandler)
	for _, follow := range []bool{true, false} {
		cfg := config(t, cc, u)
		cfg.Authorization.FollowSSHPolicy = follow
		a, err := New(t.Context(), t.Context(), cfg, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.resolver.IgnoreSSHPolicy == follow {
			t.Errorf("follow_ssh_policy %v: IgnoreSSHPolicy %v", follow, a.resolver.IgnoreSSHPolicy)
		}
	}
	if !apiconfig.Default().Authorization.FollowSSHPolicy {
		t.Error("the default does not follow the SSH policy")
	}
}
