// Package cfmode connects the API to a real Cloud Foundry: tokens verified
// against UAA's keys, captures authorized and instances found through the
// Cloud Controller with the caller's own token.
package cfmode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/cloudfoundry/pcap-server-release/internal/tlsconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/api"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/cfaccess"
	"github.com/cloudfoundry/pcap-server-release/proxy/cloudcontroller"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

// discoveryAttempts bounds how long startup waits for the Cloud Controller
// to name its UAA: a BOSH deploy may start the API before CC is up, and
// monit restarts a failed process anyway.
const discoveryAttempts = 6

// Access authenticates with UAA and authorizes with the Cloud Controller.
type Access struct {
	verifier *uaa.Verifier
	resolver *cfaccess.Resolver
}

// New builds the access checks from the configuration. keysCtx must live
// as long as the API: UAA's keys are fetched with it whenever they rotate.
// Wrap, if not nil, wraps the HTTP transports (for metrics).
func New(ctx, keysCtx context.Context, cfg *apiconfig.Config, log *slog.Logger, wrap func(name string, rt http.RoundTripper) http.RoundTripper) (*Access, error) {
	if wrap == nil {
		wrap = func(_ string, rt http.RoundTripper) http.RoundTripper { return rt }
	}
	ccTLS, err := clientTLS(cfg.CloudController.CA, cfg.CloudController.SkipTLSVerify)
	if err != nil {
		return nil, fmt.Errorf("cloud_controller.ca: %w", err)
	}
	cc, err := cloudcontroller.New(cloudcontroller.Config{
		URL:        cfg.CloudController.URL,
		HTTPClient: &http.Client{Transport: wrap("cloud_controller", transport(ccTLS))},
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	issuer := cfg.UAA.Issuer
	if issuer == "" {
		// apiconfig refuses this combination too; the issuer decides whose
		// keys sign the tokens, so it is never learnt unverified.
		if ccTLS.InsecureSkipVerify {
			return nil, errors.New("uaa.issuer is required with cloud_controller.skip_tls_verify: the UAA issuer is never discovered over an unverified connection")
		}
		if issuer, err = discover(ctx, cc, log); err != nil {
			return nil, err
		}
	}
	// UAA is verified whatever skip_tls_verify says: whoever could answer
	// for it could hand out signing keys and mint admin tokens.
	uaaTLS, err := clientTLS(cfg.UAA.CA, false)
	if err != nil {
		return nil, fmt.Errorf("uaa.ca: %w", err)
	}
	verifier, err := uaa.New(keysCtx, issuer, "", &http.Client{Transport: wrap("uaa", transport(uaaTLS)), Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	mode, err := cfaccess.ParseMode(cfg.Authorization.Mode)
	if err != nil {
		return nil, err
	}
	log.Info("Cloud Foundry access", "cloud_controller", cc.URL(), "uaa_issuer", issuer, "authorization_mode", mode,
		"follow_ssh_policy", cfg.Authorization.FollowSSHPolicy)
	return &Access{verifier: verifier, resolver: &cfaccess.Resolver{CC: cc, Mode: mode, IgnoreSSHPolicy: !cfg.Authorization.FollowSSHPolicy}}, nil
}

func discover(ctx context.Context, cc *cloudcontroller.Client, log *slog.Logger) (string, error) {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		issuer, err := cc.DiscoverIssuer(ctx)
		if err == nil {
			return issuer, nil
		}
		if attempt == discoveryAttempts {
			return "", fmt.Errorf("find UAA through the Cloud Controller at %s (set uaa.issuer to skip this): %w", cc.URL(), err)
		}
		log.Warn("cannot find UAA through the Cloud Controller yet", "error", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// clientTLS trusts caFile (in addition to nothing else) or the system roots.
func clientTLS(caFile string, skipVerify bool) (*tls.Config, error) {
	cfg, err := tlsconfig.Client(caFile)
	if err != nil {
		return nil, err
	}
	cfg.InsecureSkipVerify = skipVerify
	return cfg, nil
}

func transport(cfg *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.MaxIdleConnsPerHost = 16
	return t
}

// Authenticate verifies the bearer token locally; CC is never asked about
// a token that fails here.
func (a *Access) Authenticate(ctx context.Context, authorization string) (*api.Identity, error) {
	return a.verifier.Verify(ctx, authorization)
}

// Resolve authorizes the capture and lists the instances to capture.
func (a *Access) Resolve(ctx context.Context, id *api.Identity, appGUID, process string, indices []int) (api.App, []capture.AppInstance, error) {
	return captureTargets(a.resolver.Resolve(ctx, id, appGUID, process, indices))
}

// ResolveForStop authorizes stopping a capture of the app, which the SSH
// policy does not govern, and lists the running instances.
func (a *Access) ResolveForStop(ctx context.Context, id *api.Identity, appGUID, process string) (api.App, []capture.AppInstance, error) {
	return captureTargets(a.resolver.ResolveForStop(ctx, id, appGUID, process))
}

// captureTargets turns the Cloud Controller's view of the instances into
// what the capture needs: the cell IP picks the agent.
func captureTargets(t *cfaccess.Target, err error) (api.App, []capture.AppInstance, error) {
	if err != nil {
		return api.App{}, nil, err
	}
	targets := make([]capture.AppInstance, 0, len(t.Instances))
	for _, in := range t.Instances {
		ip, err := netip.ParseAddr(in.CellIP)
		if err != nil {
			return api.App{}, nil, problem.Wrap(err, http.StatusBadGateway,
				"the Cloud Controller reports instance %d of app %q on host %q, which is not an IP address", in.Index, t.App.Name, in.CellIP)
		}
		targets = append(targets, capture.AppInstance{
			AppGUID:      t.App.GUID,
			AppName:      t.App.Name,
			ProcessType:  t.ProcessType,
			Index:        in.Index,
			InstanceGUID: in.InstanceGUID,
			CellIP:       ip,
		})
	}
	return api.App{GUID: t.App.GUID, Name: t.App.Name}, targets, nil
}
