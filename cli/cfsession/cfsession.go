// Package cfsession gives the pcap command what it needs from a cf login:
// through the cf CLI's plugin RPC when run as `cf pcap`, or from the cf
// CLI's config.json when run on its own.
package cfsession

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
	"github.com/cloudfoundry/pcap-server-release/proxy/cloudcontroller"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// APIURL derives the pcap-server API's URL from the Cloud Controller's:
// https://api.SYS becomes https://pcap.SYS.
func APIURL(ccURL string) (string, error) {
	u, err := url.Parse(ccURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("the cf target %q is not a URL", ccURL)
	}
	host, ok := strings.CutPrefix(u.Host, "api.")
	if !ok {
		return "", fmt.Errorf("cannot derive the pcap-server API from the cf target %s (it does not start with api.): pass --api-url or set PCAP_API_URL", ccURL)
	}
	return (&url.URL{Scheme: u.Scheme, Host: "pcap." + host}).String(), nil
}

// httpClient trusts the system roots, or nothing at all when the user
// told cf to skip TLS validation for this foundation.
func httpClient(skipVerify bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if skipVerify {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// tokenSource returns an access token without "bearer ". rejected is
// empty the first time; after a 401 it is the token the Cloud Controller
// refused, and the source must return a fresh one.
type tokenSource func(ctx context.Context, rejected string) (string, error)

// findApp looks the app up by name in the targeted space with CC v3. A
// token the Cloud Controller rejects (it expired on the way, or was
// revoked) is exchanged for a fresh one once, as after the API's 401; a
// second rejection is the Cloud Controller's "log in again".
func findApp(ctx context.Context, ccURL string, skipVerify bool, name, spaceGUID, spaceName string, token tokenSource) (string, error) {
	cc, err := cloudcontroller.New(cloudcontroller.Config{URL: ccURL, HTTPClient: httpClient(skipVerify)})
	if err != nil {
		return "", err
	}
	rejected := ""
	for attempt := 0; ; attempt++ {
		t, err := token(ctx, rejected)
		if err != nil {
			return "", err
		}
		app, err := cc.AppByName(ctx, t, name, spaceGUID)
		if err == nil {
			return app.GUID, nil
		}
		var p *problem.Error
		switch {
		case errors.As(err, &p) && p.Status == http.StatusUnauthorized && attempt == 0:
			rejected = t
		case errors.As(err, &p) && p.Status == http.StatusNotFound:
			return "", fmt.Errorf("app %s not found in space %s", name, spaceName)
		case errors.As(err, &p):
			return "", fmt.Errorf("look up app %s: %s", name, p.Detail)
		default:
			return "", fmt.Errorf("look up app %s: %w", name, err)
		}
	}
}

// Plugin is the session of `cf pcap`: every answer comes from the cf CLI,
// asked right when it is needed, so the cf CLI refreshes the token.
type Plugin struct {
	Conn *cfplugin.Connection
}

// Check fails early and clearly when the cf CLI is not logged in or has
// no space targeted.
func (p Plugin) Check(ctx context.Context) error {
	ok, err := p.Conn.IsLoggedIn(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("not logged in: run `cf login` first")
	}
	return nil
}

func (p Plugin) Token(ctx context.Context) (string, error) {
	return p.Conn.AccessToken(ctx)
}

func (p Plugin) APIURL(ctx context.Context) (string, error) {
	target, err := p.Conn.ApiEndpoint(ctx)
	if err != nil {
		return "", err
	}
	return APIURL(target)
}

// SkipSSLValidation reports whether cf was told to skip TLS validation.
func (p Plugin) SkipSSLValidation(ctx context.Context) (bool, error) {
	return p.Conn.IsSSLDisabled(ctx)
}

func (p Plugin) AppGUID(ctx context.Context, name string) (string, error) {
	space, err := p.Conn.GetCurrentSpace(ctx)
	if err != nil {
		return "", err
	}
	if space.Guid == "" {
		return "", errors.New("no space targeted: run `cf target -s SPACE` first")
	}
	target, err := p.Conn.ApiEndpoint(ctx)
	if err != nil {
		return "", err
	}
	skip, err := p.Conn.IsSSLDisabled(ctx)
	if err != nil {
		return "", err
	}
	// Asked again, the cf CLI hands out a new token if the one it gave is
	// about to expire (older cf CLIs refresh on every call).
	token := func(ctx context.Context, _ string) (string, error) { return p.Conn.AccessToken(ctx) }
	return findApp(ctx, target, skip, name, space.Guid, space.Name, token)
}

// Standalone is the session of pcap-server-cli run on its own, from the
// cf CLI's config.json; it refreshes the token itself when it is about to
// expire.
type Standalone struct {
	Store *cfconfig.Store
}

func (s Standalone) Token(ctx context.Context) (string, error) { return s.Store.Token(ctx) }

// Renew replaces a token a server rejected, refreshing it at UAA even
// before its expiry.
func (s Standalone) Renew(ctx context.Context, rejected string) (string, error) {
	return s.Store.Renew(ctx, rejected)
}

func (s Standalone) APIURL(context.Context) (string, error) {
	target, err := s.Store.Target()
	if err != nil {
		return "", err
	}
	return APIURL(target)
}

// SkipSSLValidation reports whether cf was told to skip TLS validation.
func (s Standalone) SkipSSLValidation(context.Context) (bool, error) {
	return s.Store.Config().SSLDisabled, nil
}

func (s Standalone) AppGUID(ctx context.Context, name string) (string, error) {
	space, err := s.Store.Space()
	if err != nil {
		return "", err
	}
	target, err := s.Store.Target()
	if err != nil {
		return "", err
	}
	token := func(ctx context.Context, rejected string) (string, error) {
		if rejected == "" {
			return s.Store.Token(ctx)
		}
		return s.Store.Renew(ctx, rejected)
	}
	return findApp(ctx, target, s.Store.Config().SSLDisabled, name, space.GUID, space.Name, token)
}
