package cfaccess_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/cfaccess"
	"github.com/cloudfoundry/pcap-server-release/proxy/cloudcontroller"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// foundation is a UAA and a Cloud Controller with one org, two spaces and
// an app in each, and the pcap-server side wired as the API wires it.
type foundation struct {
	uaa      *fakeuaa.UAA
	cc       *fakecc.CloudController
	verifier *uaa.Verifier
	client   *cloudcontroller.Client
	org      fakecc.Org
	space    fakecc.Space // "dev", holds app
	other    fakecc.Space // "prod", holds otherApp
	app      fakecc.App   // "my-app"
	otherApp fakecc.App
}

func newFoundation(t *testing.T) *foundation {
	t.Helper()
	f := &foundation{uaa: fakeuaa.New(t)}
	f.cc = fakecc.New(t, f.uaa)
	var err error
	f.client, err = cloudcontroller.New(cloudcontroller.Config{URL: f.cc.URL, HTTPClient: f.cc.Client()})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := f.client.DiscoverIssuer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.verifier, err = uaa.New(t.Context(), issuer, "", f.uaa.Client())
	if err != nil {
		t.Fatal(err)
	}
	f.org = f.cc.AddOrg("org")
	f.space = f.cc.AddSpace(f.org.GUID, "dev")
	f.other = f.cc.AddSpace(f.org.GUID, "prod")
	f.app = f.cc.AddApp(f.space.GUID, "my-app")
	f.otherApp = f.cc.AddApp(f.other.GUID, "other-app")
	f.cc.SetInstances(f.app.GUID, "web",
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "10.0.16.5", InstanceGUID: "ig-0"},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateStarting},
		fakecc.ProcessInstance{Index: 2, State: fakecc.StateRunning, Host: "10.0.16.6"}, // older CC: no instance_guid
		fakecc.ProcessInstance{Index: 3, State: fakecc.StateDown},
		fakecc.ProcessInstance{Index: 4, State: fakecc.StateCrashed, Host: "10.0.16.7"},
		fakecc.ProcessInstance{Index: 5, State: fakecc.StateStopping, Host: "10.0.16.8"},
		fakecc.ProcessInstance{Index: 6, State: fakecc.StateRunning},
	)
	return f
}

// resolve goes the way of the API: verify the header, then authorize.
func (f *foundation) resolve(t *testing.T, mode cfaccess.Mode, header, appGUID, process string, indices []int) (*cfaccess.Target, error) {
	t.Helper()
	return f.resolveWith(t, cfaccess.Resolver{CC: f.client, Mode: mode}, header, appGUID, process, indices)
}

func (f *foundation) resolveWith(t *testing.T, r cfaccess.Resolver, header, appGUID, process string, indices []int) (*cfaccess.Target, error) {
	t.Helper()
	id, err := f.verifier.Verify(t.Context(), header)
	if err != nil {
		return nil, err
	}
	return r.Resolve(t.Context(), id, appGUID, process, indices)
}

func checkProblem(t *testing.T, err error, status int, parts ...string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var p *problem.Error
	if !errors.As(err, &p) {
		t.Fatalf("err = %v (%T), want a %d *problem.Error", err, err, status)
	}
	t.Logf("%d %s", p.Status, p.Detail)
	if p.Status != status {
		t.Errorf("status = %d, want %d", p.Status, status)
	}
	for _, s := range parts {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q lacks %q", p.Detail, s)
		}
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	f := newFoundation(t)
	roles := map[string][2]string{ // user -> role type, space or org
		"dev":           {fakecc.RoleSpaceDeveloper, f.space.GUID},
		"prod-dev":      {fakecc.RoleSpaceDeveloper, f.other.GUID},
		"auditor":       {fakecc.RoleSpaceAuditor, f.space.GUID},
		"manager":       {fakecc.RoleSpaceManager, f.space.GUID},
		"supporter":     {fakecc.RoleSpaceSupporter, f.space.GUID},
		"org-manager":   {fakecc.RoleOrgManager, f.org.GUID},
		"ci-client":     {fakecc.RoleSpaceDeveloper, f.space.GUID},
		"admin-ro":      {fakecc.RoleOrgUser, f.org.GUID},
		"global-audit":  {fakecc.RoleOrgUser, f.org.GUID},
		"plain-org-usr": {fakecc.RoleOrgUser, f.org.GUID},
	}
	for user, r := range roles {
		f.cc.AddRole(r[0], user, r[1])
	}
	stranger, err := fakeuaa.NewSigningKey("key-1")
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) string { return "bearer " + tok }
	needsDev := []string{`"my-app"`, `SpaceDeveloper role in space "dev"`}

	for _, tc := range []struct {
		name     string
		mode     cfaccess.Mode
		header   string
		status   int // 0: allowed
		detail   []string
		noCCCall bool
	}{
		{"admin", "", bearer(f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))), 0, nil, false},
		{"admin in admin_only mode", cfaccess.ModeAdminOnly, bearer(f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))), 0, nil, false},
		{"space developer", "", bearer(f.uaa.UserToken("dev")), 0, nil, false},
		{"space developer, explicit mode", cfaccess.ModeSpaceDeveloper, bearer(f.uaa.UserToken("dev")), 0, nil, false},
		{"client with space developer role", "", bearer(f.uaa.ClientToken("ci-client")), 0, nil, false},
		{"developer of another space", "", bearer(f.uaa.UserToken("prod-dev")), 404, []string{"not found or not visible to you"}, false},
		{"space auditor", "", bearer(f.uaa.UserToken("auditor")), 403, append([]string{`user "auditor"`}, needsDev...), false},
		{"space manager", "", bearer(f.uaa.UserToken("manager")), 403, needsDev, false},
		{"space supporter", "", bearer(f.uaa.UserToken("supporter")), 403, needsDev, false},
		{"org manager", "", bearer(f.uaa.UserToken("org-manager")), 403, needsDev, false},
		{"org user", "", bearer(f.uaa.UserToken("plain-org-usr")), 404, []string{"not found"}, false},
		{"admin_read_only", "", bearer(f.uaa.UserToken("admin-ro", fakeuaa.AddScopes(fakeuaa.ScopeAdminReadOnly))), 403, needsDev, false},
		{"global_auditor", "", bearer(f.uaa.UserToken("global-audit", fakeuaa.AddScopes(fakeuaa.ScopeGlobalAuditor))), 403, needsDev, false},
		{"admin_only mode, space developer", cfaccess.ModeAdminOnly, bearer(f.uaa.UserToken("dev")), 403, []string{"restricted to admins"}, true},
		{"expired token", "", bearer(f.uaa.UserToken("dev", fakeuaa.Expired())), 401, []string{"expired at"}, true},
		{"wrong signing key", "", bearer(f.uaa.UserToken("dev", fakeuaa.SignedBy(stranger))), 401, []string{"signature"}, true},
		{"wrong issuer", "", bearer(f.uaa.UserToken("dev", fakeuaa.Issuer("https://uaa.evil.example.com/oauth/token"))), 401, []string{"issuer", "expected"}, true},
		{"wrong audience", "", bearer(f.uaa.UserToken("dev", fakeuaa.Audience("cf"))), 401, []string{"audience"}, true},
		{"refresh token", "", bearer(f.uaa.RefreshToken("dev")), 401, []string{"refresh token"}, true},
		{"opaque token", "", "bearer 0c3b9e3b0b5e4c4f9f1e2e1d7c6b5a49", 401, []string{"not a JWT"}, true},
		{"no header", "", "", 401, []string{"missing Authorization header"}, true},
		{"malformed header", "", "Token " + f.uaa.UserToken("dev"), 401, []string{"malformed Authorization header"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.cc.TotalRequests()
			target, err := f.resolve(t, tc.mode, tc.header, f.app.GUID, "", nil)
			checkProblem(t, err, tc.status, tc.detail...)
			if tc.noCCCall && f.cc.TotalRequests() != before {
				t.Errorf("the Cloud Controller was called %d times", f.cc.TotalRequests()-before)
			}
			if tc.status != 0 {
				if target != nil {
					t.Errorf("target %+v with an error", target)
				}
				return
			}
			if target.App.GUID != f.app.GUID || target.App.Name != "my-app" || target.App.SpaceGUID != f.space.GUID || target.ProcessType != "web" {
				t.Errorf("target = %+v", target)
			}
			if got := indexes(target.Instances); !slices.Equal(got, []int{0, 2}) {
				t.Errorf("instances %v, want the running ones [0 2]", got)
			}
		})
	}
}

func indexes(in []cfaccess.Instance) []int {
	out := make([]int, len(in))
	for i, x := range in {
		out[i] = x.Index
	}
	return out
}

func TestAdminStillNeedsTheAppToExist(t *testing.T) {
	f := newFoundation(t)
	_, err := f.resolve(t, "", "bearer "+f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin)), "no-such-guid", "", nil)
	checkProblem(t, err, 404, `app "no-such-guid" not found`)
	if n := f.cc.Requests(fakecc.ListRoles); n != 0 {
		t.Errorf("admin's role was looked up %d times", n)
	}
}

func TestInstanceSelection(t *testing.T) {
	f := newFoundation(t)
	admin := "bearer " + f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))
	for _, tc := range []struct {
		name    string
		indices []int
		want    []cfaccess.Instance
		status  int
		detail  []string
	}{
		{"all running", nil, []cfaccess.Instance{
			{Index: 0, CellIP: "10.0.16.5", InstanceGUID: "ig-0", State: "RUNNING"},
			{Index: 2, CellIP: "10.0.16.6", State: "RUNNING"},
		}, 0, nil},
		{"chosen, in the order asked, once each", []int{2, 0, 2}, []cfaccess.Instance{
			{Index: 2, CellIP: "10.0.16.6", State: "RUNNING"},
			{Index: 0, CellIP: "10.0.16.5", InstanceGUID: "ig-0", State: "RUNNING"},
		}, 0, nil},
		{"starting", []int{0, 1}, nil, 409, []string{`instance 1 of app "my-app" is STARTING`}},
		{"down", []int{3}, nil, 409, []string{"instance 3", "DOWN"}},
		{"crashed", []int{4}, nil, 409, []string{"CRASHED"}},
		{"stopping", []int{5}, nil, 409, []string{"STOPPING"}},
		{"running without a host", []int{6}, nil, 409, []string{"no cell address"}},
		{"missing", []int{7}, nil, 404, []string{`app "my-app" has no instance 7`, "has 7 instances"}},
		{"negative", []int{-1}, nil, 400, []string{"negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, err := f.resolve(t, "", admin, f.app.GUID, "web", tc.indices)
			checkProblem(t, err, tc.status, tc.detail...)
			if tc.status == 0 && fmt.Sprint(target.Instances) != fmt.Sprint(tc.want) {
				t.Errorf("instances = %+v, want %+v", target.Instances, tc.want)
			}
		})
	}
}

func TestNoRunningInstances(t *testing.T) {
	f := newFoundation(t)
	dev := "bearer " + f.uaa.UserToken("dev")
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.other.GUID)

	_, err := f.resolve(t, "", dev, f.otherApp.GUID, "", nil)
	checkProblem(t, err, 409, `app "other-app" has no running instances`, "web process has no instances")

	f.cc.SetInstances(f.otherApp.GUID, "web",
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateCrashed, Host: "10.0.16.5"},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateStarting})
	_, err = f.resolve(t, "", dev, f.otherApp.GUID, "", nil)
	checkProblem(t, err, 409, "has no running instances", "0 CRASHED, 1 STARTING")

	f.cc.SetAppState(f.otherApp.GUID, "STOPPED")
	f.cc.SetInstances(f.otherApp.GUID, "web")
	_, err = f.resolve(t, "", dev, f.otherApp.GUID, "", nil)
	checkProblem(t, err, 409, "has no running instances", "stopped")
}

func TestOtherProcessTypes(t *testing.T) {
	f := newFoundation(t)
	dev := "bearer " + f.uaa.UserToken("dev")
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
	f.cc.SetInstances(f.app.GUID, "worker", fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "10.0.16.9", InstanceGUID: "w-0"})

	target, err := f.resolve(t, "", dev, f.app.GUID, "worker", nil)
	checkProblem(t, err, 0)
	if target.ProcessType != "worker" || len(target.Instances) != 1 || target.Instances[0].CellIP != "10.0.16.9" {
		t.Errorf("target = %+v", target)
	}
	_, err = f.resolve(t, "", dev, f.app.GUID, "clock", nil)
	checkProblem(t, err, 404, `app "my-app" has no "clock" process`)
}

func TestCloudControllerFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		// The short timeout is the hung call's only: the foundation's
		// setup (issuer discovery) keeps the default, which a busy
		// machine cannot run out of.
		f := newFoundation(t)
		short, err := cloudcontroller.New(cloudcontroller.Config{URL: f.cc.URL, HTTPClient: f.cc.Client(), Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
		f.cc.Inject(fakecc.GetApp, fakecc.Fault{Delay: time.Hour})
		start := time.Now()
		_, err = f.resolveWith(t, cfaccess.Resolver{CC: short}, "bearer "+f.uaa.UserToken("dev"), f.app.GUID, "", nil)
		checkProblem(t, err, 503, "timed out (limit 300ms)")
		// Far below the default timeout (10s): the configured one ended it.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v with a 300ms Cloud Controller timeout", d)
		}
	})
	// The other faults get the default timeout: a busy machine must not
	// turn them into timeouts.
	for _, c := range []struct {
		name     string
		endpoint string
		fault    fakecc.Fault
		status   int
		detail   string
	}{
		{"roles 500", fakecc.ListRoles, fakecc.Fault{Status: 500}, 502, "Cloud Controller error"},
		{"stats unavailable", fakecc.GetProcessStats, fakecc.Fault{Status: 503, Errors: []fakecc.Error{fakecc.KnownError(200002)}}, 503, "CF-StatsUnavailable"},
		{"connection dropped", fakecc.AnyEndpoint, fakecc.Fault{Drop: true}, 503, "unreachable"},
		// None of the SSH policy's failures lets the capture through.
		{"ssh_enabled 500", fakecc.GetSSHEnabled, fakecc.Fault{Status: 500}, 502, "Cloud Controller error while fetching the SSH policy of app"},
		{"ssh_enabled 404", fakecc.GetSSHEnabled, fakecc.Fault{Status: 404, Errors: []fakecc.Error{fakecc.KnownError(10010)}}, 404, "not found or not visible to you"},
		{"ssh_enabled 401", fakecc.GetSSHEnabled, fakecc.Fault{Status: 401, Errors: []fakecc.Error{fakecc.KnownError(1000)}}, 401, "rejected the token"},
		{"ssh_enabled 403", fakecc.GetSSHEnabled, fakecc.Fault{Status: 403, Errors: []fakecc.Error{fakecc.KnownError(10003)}}, 403, "refused access to the SSH policy"},
		{"ssh_enabled unavailable", fakecc.GetSSHEnabled, fakecc.Fault{Status: 503, Errors: []fakecc.Error{fakecc.KnownError(10015)}}, 503, "temporarily unavailable"},
		{"ssh_enabled without enabled", fakecc.GetSSHEnabled, fakecc.Fault{Status: 200, Body: `{"reason":""}`}, 502, "invalid answer"},
		{"ssh disabled without a reason", fakecc.GetSSHEnabled, fakecc.Fault{Status: 200, Body: `{"enabled":false,"reason":""}`}, 403, "without a reason"},
		{"ssh_enabled dropped", fakecc.GetSSHEnabled, fakecc.Fault{Drop: true}, 503, "unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFoundation(t)
			f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
			f.cc.Inject(c.endpoint, c.fault)
			_, err := f.resolve(t, "", "bearer "+f.uaa.UserToken("dev"), f.app.GUID, "", nil)
			checkProblem(t, err, c.status, c.detail)
		})
	}
}

// The token the Resolver passes on is the caller's own: CC sees the
// caller's roles, not pcap-server's.
func TestCallsTheCloudControllerAsTheCaller(t *testing.T) {
	f := newFoundation(t)
	cc := &recordingCC{CloudController: f.client}
	id, err := f.verifier.Verify(t.Context(), "bearer "+f.uaa.UserToken("dev"))
	if err != nil {
		t.Fatal(err)
	}
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
	if _, err := (&cfaccess.Resolver{CC: cc}).Resolve(t.Context(), id, f.app.GUID, "", nil); err != nil {
		t.Fatal(err)
	}
	if len(cc.tokens) != 4 {
		t.Fatalf("%d Cloud Controller calls, want 4", len(cc.tokens))
	}
	for _, tok := range cc.tokens {
		if tok != id.Token {
			t.Error("a call used another token than the caller's")
		}
	}
	if cc.roleUser != "dev" {
		t.Errorf("role looked up for %q", cc.roleUser)
	}
}

type recordingCC struct {
	cfaccess.CloudController
	tokens   []string
	roleUser string
}

func (r *recordingCC) App(ctx context.Context, token, guid string) (cloudcontroller.App, error) {
	r.tokens = append(r.tokens, token)
	return r.CloudController.App(ctx, token, guid)
}

func (r *recordingCC) HasSpaceRole(ctx context.Context, token, roleType, spaceGUID, userGUID string) (bool, error) {
	r.tokens = append(r.tokens, token)
	r.roleUser = userGUID
	return r.CloudController.HasSpaceRole(ctx, token, roleType, spaceGUID, userGUID)
}

func (r *recordingCC) SSHEnabled(ctx context.Context, token, appGUID string) (cloudcontroller.SSHStatus, error) {
	r.tokens = append(r.tokens, token)
	return r.CloudController.SSHEnabled(ctx, token, appGUID)
}

func (r *recordingCC) ProcessStats(ctx context.Context, token, appGUID, processType string) ([]cloudcontroller.InstanceStats, error) {
	r.tokens = append(r.tokens, token)
	return r.CloudController.ProcessStats(ctx, token, appGUID, processType)
}

func TestModes(t *testing.T) {
	for in, want := range map[string]cfaccess.Mode{"": cfaccess.ModeSpaceDeveloper, "space_developer": cfaccess.ModeSpaceDeveloper, "admin_only": cfaccess.ModeAdminOnly} {
		if got, err := cfaccess.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := cfaccess.ParseMode("admin-only"); err == nil {
		t.Error("ParseMode accepted admin-only")
	}

	f := newFoundation(t)
	id, err := f.verifier.Verify(t.Context(), "bearer "+f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&cfaccess.Resolver{CC: f.client, Mode: "admins"}).Resolve(t.Context(), id, f.app.GUID, "", nil)
	checkProblem(t, err, http.StatusInternalServerError, "not configured correctly")
	_, err = (&cfaccess.Resolver{CC: f.client}).Resolve(t.Context(), nil, f.app.GUID, "", nil)
	checkProblem(t, err, http.StatusUnauthorized)
	if n := f.cc.TotalRequests(); n != 1 { // the root document, for the issuer
		t.Errorf("%d Cloud Controller requests, want only the root document", n)
	}
}

// By default a capture needs what cf ssh needs: the Cloud Controller's
// ssh_enabled, asked with the caller's token once the app is found and the
// role checked, and its reason in the 403. Admins are not bound, and the
// operator can turn the rule off.
func TestSSHPolicy(t *testing.T) {
	f := newFoundation(t)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
	f.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", f.space.GUID)
	dev := "bearer " + f.uaa.UserToken("dev")
	auditor := "bearer " + f.uaa.UserToken("auditor")
	admin := "bearer " + f.uaa.UserToken("root", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))
	follow := cfaccess.Resolver{CC: f.client}
	ignore := cfaccess.Resolver{CC: f.client, IgnoreSSHPolicy: true}
	adminOnly := cfaccess.Resolver{CC: f.client, Mode: cfaccess.ModeAdminOnly}

	switches := []struct {
		name   string
		set    func(on bool)
		reason string
	}{
		{"app", func(on bool) { f.cc.SetAppEnableSSH(f.app.GUID, on) }, "ssh is disabled for app"},
		{"space", func(on bool) { f.cc.SetSpaceAllowSSH(f.space.GUID, on) }, "ssh is disabled for space 'dev'"},
		{"global", func(on bool) { f.cc.SetGlobalAllowSSH(on) }, "ssh is disabled globally"},
	}
	for _, sw := range switches {
		t.Run(sw.name, func(t *testing.T) {
			sw.set(false)
			defer sw.set(true)
			for _, tc := range []struct {
				name     string
				r        cfaccess.Resolver
				header   string
				status   int
				detail   []string
				asksSSH  bool // ssh_enabled asked once
				instance bool // stats asked once: the capture goes on
			}{
				{"space developer", follow, dev, 403, []string{`user "dev" may not capture app "my-app": ` + sw.reason, "cf ssh"}, true, false},
				{"auditor: the role decides first", follow, auditor, 403, []string{"SpaceDeveloper role"}, false, false},
				{"admin", follow, admin, 0, nil, false, true},
				{"admin, admin_only mode", adminOnly, admin, 0, nil, false, true},
				{"space developer, policy ignored", ignore, dev, 0, nil, false, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					asked, stats := f.cc.Requests(fakecc.GetSSHEnabled), f.cc.Requests(fakecc.GetProcessStats)
					target, err := f.resolveWith(t, tc.r, tc.header, f.app.GUID, "", nil)
					checkProblem(t, err, tc.status, tc.detail...)
					if got := f.cc.Requests(fakecc.GetSSHEnabled) - asked; (got == 1) != tc.asksSSH || got > 1 {
						t.Errorf("ssh_enabled asked %d times", got)
					}
					if got := f.cc.Requests(fakecc.GetProcessStats) - stats; (got == 1) != tc.instance || got > 1 {
						t.Errorf("stats asked %d times", got)
					}
					if tc.status == 0 && (target == nil || len(target.Instances) != 2) {
						t.Errorf("target = %+v", target)
					}
				})
			}
		})
	}

	// With every switch on again, the policy lets the developer through,
	// and the other space's switch is not this app's.
	f.cc.SetSpaceAllowSSH(f.other.GUID, false)
	_, err := f.resolveWith(t, follow, dev, f.app.GUID, "", nil)
	checkProblem(t, err, 0)

	// Who cannot see the app learns nothing of its SSH policy.
	f.cc.SetAppEnableSSH(f.app.GUID, false)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "prod-dev", f.other.GUID)
	_, err = f.resolveWith(t, follow, "bearer "+f.uaa.UserToken("prod-dev"), f.app.GUID, "", nil)
	checkProblem(t, err, 404, "not found or not visible to you")
}

// Stopping reveals nothing: a capture started before SSH was turned off
// can still be stopped by its owner.
func TestStopIsNotBoundBySSHPolicy(t *testing.T) {
	f := newFoundation(t)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev", f.space.GUID)
	f.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", f.space.GUID)
	f.cc.SetGlobalAllowSSH(false)
	r := cfaccess.Resolver{CC: f.client}
	for _, tc := range []struct {
		user   string
		status int
		detail string
	}{
		{"dev", 0, ""},
		{"auditor", 403, "SpaceDeveloper role"}, // the role still counts
		{"stranger", 404, "not found"},
	} {
		id, err := f.verifier.Verify(t.Context(), "bearer "+f.uaa.UserToken(tc.user))
		if err != nil {
			t.Fatal(err)
		}
		target, err := r.ResolveForStop(t.Context(), id, f.app.GUID, "")
		checkProblem(t, err, tc.status, tc.detail)
		if tc.status == 0 && (target.App.GUID != f.app.GUID || len(target.Instances) != 2) {
			t.Errorf("target = %+v", target)
		}
	}
	if n := f.cc.Requests(fakecc.GetSSHEnabled); n != 0 {
		t.Errorf("ssh_enabled asked %d times for a stop", n)
	}
}
