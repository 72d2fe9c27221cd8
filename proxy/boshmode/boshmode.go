// Package boshmode connects the API to a BOSH director, for the captures of
// its deployments' VMs: tokens of the director's UAA verified against that
// UAA's keys, captures authorized and VMs found through the director with
// the operator's own token.
//
// Nothing is contacted until the first request for a BOSH VM: an API
// whose director is down still serves the captures of apps, and finds the
// director (its UAA, its uuid) once it answers.
package boshmode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/api"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/boshaccess"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/director"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

// Audience is what a token of the director's UAA must be meant for: the
// bosh CLI's client, or a bosh resource. UAA derives aud from the client
// and the scopes (each scope's part before its last dot), so a user's
// token names bosh_cli, a client's with bosh.admin names bosh, and a team
// admin's names bosh.teams.<team>, not bosh.
var Audience = uaa.AudienceRule{
	Name: "bosh_cli or a bosh resource (bosh, bosh.teams.TEAM)",
	OK: func(aud []string) bool {
		for _, a := range aud {
			if a == "bosh_cli" || a == "bosh" || strings.HasPrefix(a, "bosh.") {
				return true
			}
		}
		return false
	},
}

// retryAfter is how long a failed discovery is answered from memory: a
// director that is down is not asked on every request.
const retryAfter = 5 * time.Second

// Access is api.BoshAccess for one director.
type Access struct {
	cfg      *apiconfig.Bosh
	keysCtx  context.Context
	log      *slog.Logger
	director *director.Client
	uaaHTTP  *http.Client

	mu        sync.Mutex
	ready     *found
	failed    error
	failedAt  time.Time
	discovery time.Duration // bound of one discovery, director.DefaultTimeout
}

// found is what the director told about itself.
type found struct {
	verifier *uaa.Verifier
	resolver *boshaccess.Resolver
}

var _ api.BoshAccess = (*Access)(nil)

// New prepares the access checks; it contacts nothing. keysCtx must live
// as long as the API: the UAA's keys are fetched with it whenever they
// rotate. Wrap, if not nil, wraps the HTTP transports (for metrics).
func New(keysCtx context.Context, cfg *apiconfig.Bosh, log *slog.Logger, wrap func(name string, rt http.RoundTripper) http.RoundTripper) (*Access, error) {
	if wrap == nil {
		wrap = func(_ string, rt http.RoundTripper) http.RoundTripper { return rt }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dirTLS, err := tlsconfig.Client(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("bosh.ca: %w", err)
	}
	uaaTLS, err := uaaClientTLS(cfg)
	if err != nil {
		return nil, fmt.Errorf("bosh.uaa.ca: %w", err)
	}
	c, err := director.New(director.Config{URL: cfg.DirectorURL, HTTPClient: &http.Client{Transport: wrap("bosh_director", transport(dirTLS))}})
	if err != nil {
		return nil, err
	}
	return &Access{
		cfg:       cfg,
		keysCtx:   keysCtx,
		log:       log,
		director:  c,
		uaaHTTP:   &http.Client{Transport: wrap("bosh_uaa", transport(uaaTLS)), Timeout: 10 * time.Second},
		discovery: director.DefaultTimeout,
	}, nil
}

// uaaClientTLS trusts bosh.uaa.ca; without it the director's CA (in
// bosh-deployment the director and its UAA share one) and the system
// roots, as the bosh CLI trusts the environment's ca_cert for both.
func uaaClientTLS(cfg *apiconfig.Bosh) (*tls.Config, error) {
	if cfg.UAA.CA != "" || cfg.CA == "" {
		return tlsconfig.Client(cfg.UAA.CA)
	}
	pem, err := os.ReadFile(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("read bosh.ca for the UAA: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bosh.ca %s holds no PEM certificate", cfg.CA)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

func transport(cfg *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.MaxIdleConnsPerHost = 16
	return t
}

// find learns, once, the director's uuid (its admin scope's name) and its
// UAA's issuer, unless configured, over the verified connection. A
// failure is answered again for retryAfter.
func (a *Access) find(ctx context.Context) (*found, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready != nil {
		return a.ready, nil
	}
	if a.failed != nil && time.Since(a.failedAt) < retryAfter {
		return nil, a.failed
	}
	f, err := a.discover(ctx)
	if err != nil {
		a.failed, a.failedAt = err, time.Now()
		a.log.Warn("cannot reach the BOSH director", "director", a.director.URL(), "error", err)
		return nil, err
	}
	a.ready, a.failed = f, nil
	return f, nil
}

func (a *Access) discover(ctx context.Context) (*found, error) {
	ctx, cancel := context.WithTimeout(ctx, a.discovery)
	defer cancel()
	issuer, uuid, err := a.director.DiscoverIssuer(ctx)
	if err != nil {
		return nil, problem.Wrap(err, http.StatusServiceUnavailable, "the BOSH director at %s cannot be asked about its UAA: %s", a.director.URL(), problem.From(err).Detail)
	}
	if a.cfg.UAA.Issuer != "" {
		issuer = a.cfg.UAA.Issuer
	}
	verifier, err := uaa.New(a.keysCtx, issuer, "", a.uaaHTTP, uaa.WithAudience(Audience))
	if err != nil {
		return nil, problem.Wrap(err, http.StatusServiceUnavailable, "the director's UAA: %v", err)
	}
	a.log.Info("BOSH director found", "director", a.director.URL(), "uuid", uuid, "uaa_issuer", issuer)
	return &found{verifier: verifier, resolver: &boshaccess.Resolver{Director: a.director, UUID: uuid}}, nil
}

// Authenticate verifies a token of the director's UAA locally; the
// director is never asked about a token that fails here.
func (a *Access) Authenticate(ctx context.Context, authorization string) (*api.Identity, error) {
	f, err := a.find(ctx)
	if err != nil {
		return nil, err
	}
	return f.verifier.Verify(ctx, authorization)
}

// Resolve authorizes the capture and lists its VMs (see boshaccess).
func (a *Access) Resolve(ctx context.Context, id *api.Identity, deployment string, slugs []string) ([]capture.VM, error) {
	f, err := a.find(ctx)
	if err != nil {
		return nil, err
	}
	return f.resolver.Resolve(ctx, id, deployment, slugs)
}

// IsAdmin reports bosh.admin or bosh.<director uuid>.admin; an identity
// exists only once the director was found.
func (a *Access) IsAdmin(id *api.Identity) bool {
	a.mu.Lock()
	f := a.ready
	a.mu.Unlock()
	return f != nil && f.resolver.IsAdmin(id)
}
