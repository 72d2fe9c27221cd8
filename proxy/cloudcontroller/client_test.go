package cloudcontroller_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/cloudcontroller"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

type fixture struct {
	uaa    *fakeuaa.UAA
	cc     *fakecc.CloudController
	client *cloudcontroller.Client
	logs   *bytes.Buffer
	space  fakecc.Space
	app    fakecc.App
	dev    string // token of a space developer of space
}

func newFixture(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	f := &fixture{uaa: fakeuaa.New(t), logs: &bytes.Buffer{}}
	f.cc = fakecc.New(t, f.uaa)
	var err error
	f.client, err = cloudcontroller.New(cloudcontroller.Config{
		URL:        f.cc.URL,
		HTTPClient: f.cc.Client(),
		Timeout:    timeout,
		Logger:     slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	org := f.cc.AddOrg("org")
	f.space = f.cc.AddSpace(org.GUID, "dev-space")
	f.app = f.cc.AddApp(f.space.GUID, "my-app")
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "dev-user", f.space.GUID)
	f.dev = f.uaa.UserToken("dev-user")
	return f
}

func wantProblem(t *testing.T, err error, status int, parts ...string) {
	t.Helper()
	var p *problem.Error
	if !errors.As(err, &p) {
		t.Fatalf("err = %v (%T), want *problem.Error", err, err)
	}
	t.Logf("%d %s (cause: %v)", p.Status, p.Detail, p.Err)
	if p.Status != status {
		t.Errorf("status = %d, want %d", p.Status, status)
	}
	if p.Status == http.StatusInternalServerError {
		t.Error("a Cloud Controller failure became a 500")
	}
	for _, s := range parts {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("detail %q lacks %q", p.Detail, s)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, u := range []string{"", "api.example.com", "ftp://api.example.com", "https://api.example.com?x=1"} {
		if _, err := cloudcontroller.New(cloudcontroller.Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := cloudcontroller.New(cloudcontroller.Config{URL: "https://api.example.com/"})
	if err != nil || c.URL() != "https://api.example.com" {
		t.Errorf("New: %v %v", c, err)
	}
}

func TestRootAndIssuerDiscovery(t *testing.T) {
	f := newFixture(t, 0)
	root, err := f.client.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if root.UAA != f.uaa.URL || root.Login != f.uaa.URL || root.CloudControllerV3 != f.cc.URL+"/v3" || root.APIVersion != fakecc.APIVersion {
		t.Errorf("root = %+v", root)
	}

	issuer, err := f.client.DiscoverIssuer(t.Context())
	if err != nil || issuer != f.uaa.Issuer {
		t.Fatalf("issuer = %q, %v; want %q", issuer, err, f.uaa.Issuer)
	}
	// The discovered issuer is one tokens verify against.
	v, err := uaa.New(t.Context(), issuer, "", f.uaa.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), "bearer "+f.dev); err != nil {
		t.Errorf("token does not verify against the discovered issuer: %v", err)
	}

	f.cc.Inject(fakecc.GetRoot, fakecc.Fault{Status: 200, Body: `{"links":{"self":{"href":"x"}}}`})
	_, err = f.client.DiscoverIssuer(t.Context())
	wantProblem(t, err, 502, "no usable UAA link")
}

func TestApp(t *testing.T) {
	f := newFixture(t, 0)
	app, err := f.client.App(t.Context(), f.dev, f.app.GUID)
	if err != nil {
		t.Fatal(err)
	}
	want := cloudcontroller.App{GUID: f.app.GUID, Name: "my-app", State: "STARTED", SpaceGUID: f.space.GUID, SpaceName: "dev-space"}
	if app != want {
		t.Errorf("app = %+v, want %+v", app, want)
	}
	// A token as the cf CLI hands it over works too.
	if _, err := f.client.App(t.Context(), "bearer "+f.dev, f.app.GUID); err != nil {
		t.Errorf("with bearer prefix: %v", err)
	}

	_, err = f.client.App(t.Context(), f.uaa.UserToken("outsider"), f.app.GUID)
	wantProblem(t, err, 404, fmt.Sprintf("app %q not found", f.app.GUID))

	refusesImpossibleGUIDs(t, f, func(guid string) error {
		_, err := f.client.App(t.Context(), f.dev, guid)
		return err
	})
}

// refusesImpossibleGUIDs: an app guid that would change the path the
// Cloud Controller sees is a 404 without a request, and a crafted one
// reaches no other endpoint.
func refusesImpossibleGUIDs(t *testing.T, f *fixture, call func(guid string) error) {
	t.Helper()
	before := f.cc.TotalRequests()
	for _, guid := range []string{"", "..", "."} {
		wantProblem(t, call(guid), 404)
	}
	if f.cc.TotalRequests() != before {
		t.Error("a request was sent for an impossible guid")
	}
	wantProblem(t, call("../../v3/roles"), 404)
	if n := f.cc.Requests(fakecc.ListRoles); n != 0 {
		t.Errorf("a crafted guid reached another endpoint (%d role requests)", n)
	}
}

func TestAppByName(t *testing.T) {
	f := newFixture(t, 0)
	other := f.cc.AddSpace(f.cc.AddOrg("o2").GUID, "other")
	f.cc.AddApp(other.GUID, "my-app")
	admin := f.uaa.UserToken("admin", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))

	app, err := f.client.AppByName(t.Context(), admin, "my-app", f.space.GUID)
	if err != nil || app.GUID != f.app.GUID || app.SpaceName != "dev-space" {
		t.Errorf("AppByName = %+v, %v", app, err)
	}
	_, err = f.client.AppByName(t.Context(), f.dev, "nope", f.space.GUID)
	wantProblem(t, err, 404, `app "nope" in space`)
	// CC splits names on commas; that must not find my-app.
	_, err = f.client.AppByName(t.Context(), f.dev, "my-app,x", f.space.GUID)
	wantProblem(t, err, 404)
}

func TestHasSpaceRole(t *testing.T) {
	f := newFixture(t, 0)
	f.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", f.space.GUID)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, "pipeline-client", f.space.GUID)
	auditor := f.uaa.UserToken("auditor")
	for _, tc := range []struct {
		name, token, role, user string
		want                    bool
	}{
		{"developer", f.dev, "space_developer", "dev-user", true},
		{"client as developer", f.uaa.ClientToken("pipeline-client"), "space_developer", "pipeline-client", true},
		{"auditor is no developer", auditor, "space_developer", "auditor", false},
		{"auditor role", auditor, "space_auditor", "auditor", true},
		{"outsider", f.uaa.UserToken("outsider"), "space_developer", "outsider", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.client.HasSpaceRole(t.Context(), tc.token, tc.role, f.space.GUID, tc.user)
			if err != nil || got != tc.want {
				t.Errorf("HasSpaceRole = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// A Cloud Controller (or something in between) that ignores the filters
// and lists someone else's role must not grant the role.
func TestHasSpaceRoleChecksTheListedRole(t *testing.T) {
	f := newFixture(t, 0)
	body := fmt.Sprintf(`{"pagination":{"total_results":1,"total_pages":1,"next":null},"resources":[
		{"guid":"r1","type":"space_developer","relationships":{"user":{"data":{"guid":"somebody-else"}},"space":{"data":{"guid":%q}},"organization":{"data":null}}}]}`, f.space.GUID)
	f.cc.Inject(fakecc.ListRoles, fakecc.Fault{Status: 200, Body: body})
	got, err := f.client.HasSpaceRole(t.Context(), f.dev, "space_developer", f.space.GUID, "dev-user")
	if err != nil || got {
		t.Errorf("HasSpaceRole = %v, %v; want false", got, err)
	}
}

func TestPaginationLinksStayOnTheCloudController(t *testing.T) {
	f := newFixture(t, 0)
	page := func(next string) string {
		return fmt.Sprintf(`{"pagination":{"total_results":2,"total_pages":2,"next":{"href":%q}},"resources":[]}`, next)
	}
	f.cc.Inject(fakecc.ListRoles, fakecc.Fault{Status: 200, Body: page("https://evil.example.com/v3/roles?page=2")})
	_, err := f.client.HasSpaceRole(t.Context(), f.dev, "space_developer", f.space.GUID, "dev-user")
	wantProblem(t, err, 502, "not on the Cloud Controller")

	f.cc.Inject(fakecc.ListRoles, fakecc.Fault{Status: 200, Body: page(f.cc.URL + "/v3/roles?page=2")})
	_, err = f.client.HasSpaceRole(t.Context(), f.dev, "space_developer", f.space.GUID, "dev-user")
	wantProblem(t, err, 502, "loops")
	if n := f.cc.Requests(fakecc.ListRoles); n != 3 {
		t.Errorf("role requests = %d, want 3 (1 refused link, then 2 pages before the loop)", n)
	}
}

func TestProcessStats(t *testing.T) {
	f := newFixture(t, 0)
	f.cc.SetInstances(f.app.GUID, "web",
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateStarting},
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "10.0.16.5", InstanceGUID: "ig-0", InternalIP: "10.255.0.9", Uptime: 7},
		fakecc.ProcessInstance{Index: 2, State: fakecc.StateDown, Details: "insufficient resources"},
	)
	stats, err := f.client.ProcessStats(t.Context(), f.dev, f.app.GUID, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := []cloudcontroller.InstanceStats{
		{Type: "web", Index: 0, State: "RUNNING", Host: "10.0.16.5", InstanceGUID: "ig-0", InternalIP: "10.255.0.9", Uptime: 7},
		{Type: "web", Index: 1, State: "STARTING"},
		{Type: "web", Index: 2, State: "DOWN", Details: "insufficient resources"},
	}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Errorf("stats =\n%+v\nwant\n%+v", stats, want)
	}
	_, err = f.client.ProcessStats(t.Context(), f.dev, f.app.GUID, "worker")
	wantProblem(t, err, 404, `process "worker" of app`)
}

func TestSSHEnabled(t *testing.T) {
	f := newFixture(t, 0)
	f.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", f.space.GUID)
	for _, tc := range []struct {
		name string
		set  func()
		want cloudcontroller.SSHStatus
	}{
		{"enabled", func() {}, cloudcontroller.SSHStatus{Enabled: true}},
		{"app", func() { f.cc.SetAppEnableSSH(f.app.GUID, false) }, cloudcontroller.SSHStatus{Reason: "ssh is disabled for app"}},
		{"space", func() { f.cc.SetSpaceAllowSSH(f.space.GUID, false) }, cloudcontroller.SSHStatus{Reason: "ssh is disabled for space 'dev-space'"}},
		{"global", func() { f.cc.SetGlobalAllowSSH(false) }, cloudcontroller.SSHStatus{Reason: "ssh is disabled globally"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			for _, token := range []string{f.dev, f.uaa.UserToken("auditor")} {
				got, err := f.client.SSHEnabled(t.Context(), token, f.app.GUID)
				if err != nil || got != tc.want {
					t.Errorf("SSHEnabled = %+v, %v; want %+v", got, err, tc.want)
				}
			}
		})
	}

	_, err := f.client.SSHEnabled(t.Context(), f.uaa.UserToken("outsider"), f.app.GUID)
	wantProblem(t, err, 404, fmt.Sprintf("app %q not found or not visible to you", f.app.GUID))
	refusesImpossibleGUIDs(t, f, func(guid string) error {
		_, err := f.client.SSHEnabled(t.Context(), f.dev, guid)
		return err
	})
}

// The answer decides whether traffic is shown: anything but a boolean
// "enabled" is a 502, never taken for enabled; the reason is CC's text,
// shortened and printable, as it ends up in messages and the audit log.
func TestSSHEnabledAnswers(t *testing.T) {
	errBody := func(code int) []fakecc.Error { return []fakecc.Error{fakecc.KnownError(code)} }
	for _, tc := range []struct {
		name   string
		fault  fakecc.Fault
		want   cloudcontroller.SSHStatus
		status int
		detail string
	}{
		{"no reason", fakecc.Fault{Status: 200, Body: `{"enabled":false}`}, cloudcontroller.SSHStatus{}, 0, ""},
		{"null reason", fakecc.Fault{Status: 200, Body: `{"enabled":true,"reason":null}`}, cloudcontroller.SSHStatus{Enabled: true}, 0, ""},
		{"reason cleaned", fakecc.Fault{Status: 200, Body: `{"enabled":false,"reason":" ssh is\u0007 disabled\n` + strings.Repeat("x", 300) + `"}`},
			cloudcontroller.SSHStatus{Reason: "ssh is? disabled?" + strings.Repeat("x", 183) + "..."}, 0, ""},
		{"no enabled", fakecc.Fault{Status: 200, Body: `{"reason":""}`}, cloudcontroller.SSHStatus{}, 502, "invalid answer for the SSH policy of app"},
		{"enabled as text", fakecc.Fault{Status: 200, Body: `{"enabled":"true","reason":""}`}, cloudcontroller.SSHStatus{}, 502, "invalid answer"},
		{"null", fakecc.Fault{Status: 200, Body: `null`}, cloudcontroller.SSHStatus{}, 502, "invalid answer"},
		{"not JSON", fakecc.Fault{Status: 200, Body: `<html>`}, cloudcontroller.SSHStatus{}, 502, "invalid answer"},
		{"invalid token", fakecc.Fault{Status: 401, Errors: errBody(1000)}, cloudcontroller.SSHStatus{}, 401, "rejected the token"},
		{"not authorized", fakecc.Fault{Status: 403, Errors: errBody(10003)}, cloudcontroller.SSHStatus{}, 403, "refused access to the SSH policy of app"},
		{"not found", fakecc.Fault{Status: 404, Errors: errBody(10010)}, cloudcontroller.SSHStatus{}, 404, "not found or not visible to you"},
		{"server error", fakecc.Fault{Status: 500, Errors: errBody(10001)}, cloudcontroller.SSHStatus{}, 502, "Cloud Controller error while fetching the SSH policy of app"},
		{"unavailable", fakecc.Fault{Status: 503, Errors: errBody(10015)}, cloudcontroller.SSHStatus{}, 503, "temporarily unavailable"},
		{"connection dropped", fakecc.Fault{Drop: true}, cloudcontroller.SSHStatus{}, 503, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			f.cc.Inject(fakecc.GetSSHEnabled, tc.fault)
			got, err := f.client.SSHEnabled(t.Context(), f.dev, f.app.GUID)
			if tc.status == 0 {
				if err != nil || got != tc.want {
					t.Errorf("SSHEnabled = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			wantProblem(t, err, tc.status, tc.detail)
			if got != (cloudcontroller.SSHStatus{}) {
				t.Errorf("status %+v with an error", got)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	errBody := func(code int) []fakecc.Error { return []fakecc.Error{fakecc.KnownError(code)} }
	for _, tc := range []struct {
		name   string
		fault  fakecc.Fault
		status int
		detail string
	}{
		{"invalid token", fakecc.Fault{Status: 401, Errors: errBody(1000)}, 401, "rejected the token (CF-InvalidAuthToken, code 1000)"},
		{"not authenticated", fakecc.Fault{Status: 401, Errors: errBody(10002)}, 401, "rejected the token"},
		{"not authorized", fakecc.Fault{Status: 403, Errors: errBody(10003)}, 403, "refused access to app"},
		{"insufficient scope", fakecc.Fault{Status: 403, Errors: errBody(10007)}, 403, "CF-InsufficientScope"},
		{"org suspended", fakecc.Fault{Status: 403, Errors: errBody(10017)}, 403, "CF-OrgSuspended"},
		{"not found", fakecc.Fault{Status: 404, Errors: errBody(10010)}, 404, "not found"},
		{"rate limited", fakecc.Fault{Status: 429, Errors: errBody(10013)}, 429, "rate limit"},
		{"service unavailable", fakecc.Fault{Status: 503, Errors: errBody(10015)}, 503, "temporarily unavailable"},
		{"uaa unavailable", fakecc.Fault{Status: 503, Errors: errBody(20004)}, 503, "CF-UaaUnavailable"},
		{"stats unavailable", fakecc.Fault{Status: 503, Errors: errBody(200002)}, 503, "CF-StatsUnavailable"},
		{"instances unavailable", fakecc.Fault{Status: 503, Errors: errBody(220002)}, 503, "CF-InstancesUnavailable"},
		{"other 503 code", fakecc.Fault{Status: 503, Errors: []fakecc.Error{{Code: 150003, Title: "CF-InsufficientRunningResourcesAvailable"}}}, 502, "Cloud Controller error"},
		{"server error", fakecc.Fault{Status: 500, Errors: errBody(10001)}, 502, "Cloud Controller error while fetching app"},
		{"router 502 page", fakecc.Fault{Status: 502, Body: "<html>502 Bad Gateway</html>"}, 502, "HTTP 502, no error details"},
		{"router 503 page", fakecc.Fault{Status: 503, Body: "503 Service Unavailable"}, 503, "Cloud Controller unavailable"},
		{"bad query parameter", fakecc.Fault{Status: 400, Errors: errBody(10005)}, 502, "refused the request"},
		{"unprocessable", fakecc.Fault{Status: 422, Errors: errBody(10008)}, 502, "HTTP 422"},
		{"code decides, not status", fakecc.Fault{Status: 400, Errors: errBody(10010)}, 404, "not found"},
		{"status decides without code", fakecc.Fault{Status: 403, Body: `{"errors":[]}`}, 403, "no error details"},
		{"invalid JSON", fakecc.Fault{Status: 200, Body: `{"guid":`}, 502, "invalid response"},
		{"wrong JSON type", fakecc.Fault{Status: 200, Body: `{"guid":42}`}, 502, "invalid response"},
		{"oversized body", fakecc.Fault{Status: 200, Body: `{"name":"` + strings.Repeat("x", 9<<20) + `"}`}, 502, "larger than"},
		{"connection dropped", fakecc.Fault{Drop: true}, 503, "Cloud Controller unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			f.cc.Inject(fakecc.GetApp, tc.fault)
			_, err := f.client.App(t.Context(), f.dev, f.app.GUID)
			wantProblem(t, err, tc.status, tc.detail)
			var p *problem.Error
			if errors.As(err, &p) && strings.Contains(p.Detail, f.dev) {
				t.Error("detail contains the token")
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	f := newFixture(t, 200*time.Millisecond)
	f.cc.Inject(fakecc.GetApp, fakecc.Fault{Delay: time.Hour})
	start := time.Now()
	_, err := f.client.App(t.Context(), f.dev, f.app.GUID)
	wantProblem(t, err, 503, "timed out", "200ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call took %v with a 200ms timeout", d)
	}
}

func TestUnreachable(t *testing.T) {
	f := newFixture(t, 0)
	f.cc.Close()
	_, err := f.client.App(t.Context(), f.dev, f.app.GUID)
	wantProblem(t, err, 503, "Cloud Controller unreachable")
	_, err = f.client.Root(t.Context())
	wantProblem(t, err, 503, "Cloud Controller unreachable")
}

func TestWrongCAIsUnreachable(t *testing.T) {
	f := newFixture(t, 0)
	c, err := cloudcontroller.New(cloudcontroller.Config{URL: f.cc.URL, HTTPClient: f.uaa.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Root(t.Context())
	wantProblem(t, err, 503, "unreachable", "TLS certificate is not trusted")
}

func TestWarningsAreLoggedNotReturned(t *testing.T) {
	f := newFixture(t, 0)
	f.cc.Inject(fakecc.GetApp, fakecc.Fault{Warnings: []string{"Stack cflinuxfs3 is deprecated, please migrate", "second"}})
	if _, err := f.client.App(t.Context(), f.dev, f.app.GUID); err != nil {
		t.Fatal(err)
	}
	logs := f.logs.String()
	for _, w := range []string{`warning="Stack cflinuxfs3 is deprecated, please migrate"`, "warning=second"} {
		if !strings.Contains(logs, w) {
			t.Errorf("logs lack %s:\n%s", w, logs)
		}
	}
}
