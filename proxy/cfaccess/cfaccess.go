// Package cfaccess decides whether a verified caller may capture an app and
// which of its instances a capture goes to. It asks the Cloud Controller
// with the caller's own token, so Cloud Foundry's visibility rules and its
// SSH policy apply unchanged; only the rule "space developer or admin" is
// pcap-server's.
package cfaccess

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/cloudcontroller"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

// Mode is the authorization rule the operator chose.
type Mode string

const (
	// ModeSpaceDeveloper lets admins and space developers of the app's
	// space capture. It is the default.
	ModeSpaceDeveloper Mode = "space_developer"
	// ModeAdminOnly lets only admins capture.
	ModeAdminOnly Mode = "admin_only"
)

// ParseMode reads the authorization.mode config key; empty is the default.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeSpaceDeveloper:
		return ModeSpaceDeveloper, nil
	case ModeAdminOnly:
		return ModeAdminOnly, nil
	}
	return "", fmt.Errorf("authorization mode %q: want %s or %s", s, ModeSpaceDeveloper, ModeAdminOnly)
}

// DefaultProcessType is the process captured when none is named.
const DefaultProcessType = "web"

// RoleSpaceDeveloper is the Cloud Controller role type that allows capture.
const RoleSpaceDeveloper = "space_developer"

// StateRunning is the only instance state that can be captured.
const StateRunning = "RUNNING"

// CloudController is what Resolve needs of the Cloud Controller;
// *cloudcontroller.Client provides it.
type CloudController interface {
	App(ctx context.Context, token, guid string) (cloudcontroller.App, error)
	HasSpaceRole(ctx context.Context, token, roleType, spaceGUID, userGUID string) (bool, error)
	SSHEnabled(ctx context.Context, token, appGUID string) (cloudcontroller.SSHStatus, error)
	ProcessStats(ctx context.Context, token, appGUID, processType string) ([]cloudcontroller.InstanceStats, error)
}

// Resolver applies the authorization rule and finds instances.
type Resolver struct {
	CC   CloudController
	Mode Mode // empty means ModeSpaceDeveloper
	// IgnoreSSHPolicy lets space developers capture apps that cf ssh
	// cannot reach (authorization.follow_ssh_policy: false). A capture
	// reads what an SSH session could (with -d lo, the plaintext behind
	// envoy), so the zero value follows Cloud Foundry's SSH policy.
	IgnoreSSHPolicy bool
}

// Instance is one instance a capture goes to.
type Instance struct {
	Index int
	// CellIP is the Diego cell's IP (the stats' host); it selects the
	// agent session.
	CellIP string
	// InstanceGUID is the garden handle, empty on older Cloud Controllers;
	// the agent then finds the container by app GUID and index.
	InstanceGUID string
	State        string
}

// Target is what a capture may go to.
type Target struct {
	App         cloudcontroller.App
	ProcessType string
	Instances   []Instance
}

// Resolve checks that id may capture app appGUID and picks the instances
// of processType (default web): the given indices, or every running
// instance when there are none. Errors are *problem.Error: 403 not
// allowed (with the Cloud Controller's reason when its SSH policy
// refuses), 404 app, process or instance not found (or not visible), 409
// instance not running, and the Cloud Controller's own failures.
func (r *Resolver) Resolve(ctx context.Context, id *uaa.Identity, appGUID, processType string, indices []int) (*Target, error) {
	return r.resolve(ctx, id, appGUID, processType, indices, !r.IgnoreSSHPolicy)
}

// ResolveForStop is Resolve for stopping a capture of the app's running
// instances: the same rules except the SSH policy. Stopping reveals
// nothing, and a capture that started before SSH was turned off must
// still end gracefully when its owner asks.
func (r *Resolver) ResolveForStop(ctx context.Context, id *uaa.Identity, appGUID, processType string) (*Target, error) {
	return r.resolve(ctx, id, appGUID, processType, nil, false)
}

func (r *Resolver) resolve(ctx context.Context, id *uaa.Identity, appGUID, processType string, indices []int, sshPolicy bool) (*Target, error) {
	if id == nil {
		return nil, problem.New(http.StatusUnauthorized, "not authenticated")
	}
	mode := r.Mode
	if mode == "" {
		mode = ModeSpaceDeveloper
	}
	if mode != ModeSpaceDeveloper && mode != ModeAdminOnly {
		// Fail closed: a typo in the mode must not open capture to anyone.
		return nil, problem.New(http.StatusInternalServerError, "authorization mode %q is not configured correctly", mode)
	}
	if processType == "" {
		processType = DefaultProcessType
	}
	for _, i := range indices {
		if i < 0 {
			return nil, problem.New(http.StatusBadRequest, "instance index %d is negative", i)
		}
	}
	admin := id.IsAdmin()
	if !admin && mode == ModeAdminOnly {
		return nil, problem.New(http.StatusForbidden, "capture is restricted to admins (scope %s) on this foundation", uaa.AdminScope)
	}

	app, err := r.CC.App(ctx, id.Token, appGUID)
	if err != nil {
		return nil, err
	}
	if !admin {
		ok, err := r.CC.HasSpaceRole(ctx, id.Token, RoleSpaceDeveloper, app.SpaceGUID, id.Subject())
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, problem.New(http.StatusForbidden,
				"%s may not capture app %q: capturing needs the SpaceDeveloper role in space %s",
				who(id), app.Name, spaceName(app))
		}
		if sshPolicy {
			if err := r.checkSSHPolicy(ctx, id, app); err != nil {
				return nil, err
			}
		}
	}

	stats, err := r.CC.ProcessStats(ctx, id.Token, app.GUID, processType)
	if err != nil {
		var p *problem.Error
		if errors.As(err, &p) && p.Status == http.StatusNotFound {
			// The app was just found, so it is the process type.
			return nil, problem.Wrap(err, http.StatusNotFound, "app %q has no %q process", app.Name, processType)
		}
		return nil, err
	}
	instances, err := selectInstances(app, processType, stats, indices)
	if err != nil {
		return nil, err
	}
	return &Target{App: app, ProcessType: processType, Instances: instances}, nil
}

// checkSSHPolicy refuses a capture that cf ssh into the app would be
// refused: a capture reads the app's traffic, and on lo its plaintext.
// The Cloud Controller combines the operator's, the space's and the app's
// switches and says which one is off.
func (r *Resolver) checkSSHPolicy(ctx context.Context, id *uaa.Identity, app cloudcontroller.App) error {
	ssh, err := r.CC.SSHEnabled(ctx, id.Token, app.GUID)
	if err != nil {
		return err
	}
	if ssh.Enabled {
		return nil
	}
	reason := ssh.Reason
	if reason == "" {
		reason = "the Cloud Controller says ssh is disabled for it, without a reason"
	}
	return problem.New(http.StatusForbidden, "%s may not capture app %q: %s, and a capture needs what cf ssh needs",
		who(id), app.Name, reason)
}

// selectInstances picks what can be captured: RUNNING with a cell IP.
func selectInstances(app cloudcontroller.App, processType string, stats []cloudcontroller.InstanceStats, indices []int) ([]Instance, error) {
	toInstance := func(s cloudcontroller.InstanceStats) Instance {
		return Instance{Index: s.Index, CellIP: s.Host, InstanceGUID: s.InstanceGUID, State: s.State}
	}
	if len(indices) == 0 {
		var out []Instance
		for _, s := range stats {
			if s.State == StateRunning && s.Host != "" {
				out = append(out, toInstance(s))
			}
		}
		if len(out) == 0 {
			return nil, problem.New(http.StatusConflict, "app %q has no running instances%s", app.Name, notRunningReason(app, processType, stats))
		}
		return out, nil
	}

	var out []Instance
	var done []int
	for _, i := range indices {
		if slices.Contains(done, i) {
			continue
		}
		done = append(done, i)
		k := slices.IndexFunc(stats, func(s cloudcontroller.InstanceStats) bool { return s.Index == i })
		if k < 0 {
			return nil, problem.New(http.StatusNotFound, "app %q has no instance %d (its %s process has %d instances)",
				app.Name, i, processType, len(stats))
		}
		s := stats[k]
		switch {
		case s.State != StateRunning:
			return nil, problem.New(http.StatusConflict, "instance %d of app %q is %s, not RUNNING", i, app.Name, s.State)
		case s.Host == "":
			return nil, problem.New(http.StatusConflict, "instance %d of app %q is RUNNING but has no cell address yet", i, app.Name)
		}
		out = append(out, toInstance(s))
	}
	return out, nil
}

// notRunningReason says why nothing runs, as far as the Cloud Controller
// tells.
func notRunningReason(app cloudcontroller.App, processType string, stats []cloudcontroller.InstanceStats) string {
	switch {
	case app.State == "STOPPED":
		return " (the app is stopped)"
	case len(stats) == 0:
		return fmt.Sprintf(" (its %s process has no instances)", processType)
	}
	states := make([]string, 0, len(stats))
	for _, s := range stats {
		states = append(states, fmt.Sprintf("%d %s", s.Index, s.State))
	}
	return " (instances: " + strings.Join(states, ", ") + ")"
}

func who(id *uaa.Identity) string {
	if id.UserID != "" {
		if id.UserName != "" {
			return fmt.Sprintf("user %q", id.UserName)
		}
		return "user " + id.UserID
	}
	return fmt.Sprintf("client %q", id.ClientID)
}

func spaceName(app cloudcontroller.App) string {
	if app.SpaceName != "" {
		return fmt.Sprintf("%q (%s)", app.SpaceName, app.SpaceGUID)
	}
	return app.SpaceGUID
}
