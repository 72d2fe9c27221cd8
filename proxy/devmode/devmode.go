// Package devmode stands in for UAA and the Cloud Controller in the local
// demo and in trials without Cloud Foundry: one fixed bearer token, which
// counts as an admin, and a fixed list of app instances and their cells.
package devmode

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/api"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

// Auth accepts exactly one token.
type Auth struct {
	Token string
}

func (a Auth) Authenticate(_ context.Context, authorization string) (*api.Identity, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	switch {
	case authorization == "":
		return nil, problem.New(http.StatusUnauthorized, "missing Authorization header: send Authorization: bearer <token>")
	case !ok || !strings.EqualFold(scheme, "bearer"):
		return nil, problem.New(http.StatusUnauthorized, "Authorization header is not a bearer token")
	case subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(a.Token)) != 1:
		return nil, problem.New(http.StatusUnauthorized, "invalid token (dev mode accepts only its configured token)")
	}
	return &api.Identity{UserID: "dev", UserName: "dev", ClientID: "dev", Scopes: []string{uaa.AdminScope}}, nil
}

// Targets resolves apps from the configured list.
type Targets []apiconfig.DevTarget

// ResolveForStop finds every configured instance of the app: dev mode has
// no policy beyond its one token.
func (ts Targets) ResolveForStop(ctx context.Context, id *api.Identity, appGUID, process string) (api.App, []capture.AppInstance, error) {
	return ts.Resolve(ctx, id, appGUID, process, nil)
}

func (ts Targets) Resolve(_ context.Context, _ *api.Identity, appGUID, process string, indices []int) (api.App, []capture.AppInstance, error) {
	var app api.App
	var all []capture.AppInstance
	for _, t := range ts {
		proc := t.Process
		if proc == "" {
			proc = "web"
		}
		if t.AppGUID != appGUID || proc != process {
			continue
		}
		app = api.App{GUID: t.AppGUID, Name: t.AppName}
		all = append(all, capture.AppInstance{
			AppGUID:     t.AppGUID,
			AppName:     t.AppName,
			ProcessType: proc,
			Index:       t.Index,
			CellIP:      netip.MustParseAddr(t.CellIP),
		})
	}
	if len(all) == 0 {
		return api.App{}, nil, problem.New(http.StatusNotFound, "app %s has no %s process in dev.targets", appGUID, process)
	}
	if len(indices) == 0 {
		return app, all, nil
	}
	var picked []capture.AppInstance
	for _, i := range indices {
		j := slices.IndexFunc(all, func(t capture.AppInstance) bool { return t.Index == i })
		if j < 0 {
			return api.App{}, nil, problem.New(http.StatusNotFound, "app %s has no instance %d", appGUID, i)
		}
		picked = append(picked, all[j])
	}
	return app, picked, nil
}

// WarnEvery logs that dev mode is on every interval until ctx ends: an
// operator must not forget an API that accepts one static token.
func WarnEvery(ctx context.Context, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		log.Warn("dev mode is on: UAA and the Cloud Controller are not consulted, one static token is an admin")
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
