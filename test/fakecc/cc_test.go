package fakecc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

type world struct {
	uaa              *fakeuaa.UAA
	cc               *fakecc.CloudController
	org              fakecc.Org
	space, other     fakecc.Space
	app, otherApp    fakecc.App
	client           *http.Client
	dev, outsider    string
	orgManager       string
	developerToken   string
	outsiderToken    string
	orgManagerToken  string
	readOnlyAdminTok string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{uaa: fakeuaa.New(t)}
	w.cc = fakecc.New(t, w.uaa)
	w.client = w.cc.Client()
	w.org = w.cc.AddOrg("org")
	w.space = w.cc.AddSpace(w.org.GUID, "dev")
	w.other = w.cc.AddSpace(w.cc.AddOrg("other-org").GUID, "prod")
	w.app = w.cc.AddApp(w.space.GUID, "my-app")
	w.otherApp = w.cc.AddApp(w.other.GUID, "their-app")
	w.dev, w.outsider, w.orgManager = "dev-user", "outsider", "org-manager"
	w.cc.AddRole(fakecc.RoleSpaceDeveloper, w.dev, w.space.GUID)
	w.cc.AddRole(fakecc.RoleOrgManager, w.orgManager, w.org.GUID)
	w.developerToken = w.uaa.UserToken(w.dev)
	w.outsiderToken = w.uaa.UserToken(w.outsider)
	w.orgManagerToken = w.uaa.UserToken(w.orgManager)
	w.readOnlyAdminTok = w.uaa.UserToken("ro-admin", fakeuaa.Scopes(fakeuaa.ScopeAdminReadOnly))
	return w
}

// get does an authenticated GET and decodes the JSON body.
func (w *world) get(t *testing.T, ctx context.Context, token, path string, v any) (int, http.Header) {
	t.Helper()
	u := path
	if !strings.HasPrefix(path, "https://") {
		u = w.cc.URL + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode, resp.Header
}

type ccErrors struct {
	Errors []fakecc.Error `json:"errors"`
}

func TestRootDocument(t *testing.T) {
	w := newWorld(t)
	var root struct {
		Links map[string]struct {
			Href string            `json:"href"`
			Meta map[string]string `json:"meta"`
		} `json:"links"`
	}
	if status, _ := w.get(t, t.Context(), "", "/", &root); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if root.Links["uaa"].Href != w.uaa.URL || root.Links["login"].Href != w.uaa.URL || root.Links["self"].Href != w.cc.URL {
		t.Errorf("links = %+v", root.Links)
	}
	if v3 := root.Links["cloud_controller_v3"]; v3.Href != w.cc.URL+"/v3" || v3.Meta["version"] != fakecc.APIVersion {
		t.Errorf("v3 link = %+v", v3)
	}
}

func TestAuthentication(t *testing.T) {
	w := newWorld(t)
	other, err := fakeuaa.NewSigningKey("key-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		token  string
		status int
		code   int
	}{
		"missing":        {"", 401, 10002},
		"garbage":        {"abc", 401, 1000},
		"wrong key":      {w.uaa.UserToken(w.dev, fakeuaa.SignedBy(other)), 401, 1000},
		"expired":        {w.uaa.UserToken(w.dev, fakeuaa.Expired()), 401, 1000},
		"refresh token":  {w.uaa.RefreshToken(w.dev), 401, 1000},
		"wrong audience": {w.uaa.UserToken(w.dev, fakeuaa.Audience("cf")), 401, 1000},
		"no read scope":  {w.uaa.UserToken(w.dev, fakeuaa.Scopes("openid", fakeuaa.ScopeWrite)), 403, 10007},
	} {
		t.Run(name, func(t *testing.T) {
			var body ccErrors
			status, _ := w.get(t, t.Context(), tc.token, "/v3/apps/"+w.app.GUID, &body)
			if status != tc.status || len(body.Errors) != 1 || body.Errors[0].Code != tc.code {
				t.Errorf("got %d %+v, want %d code %d", status, body, tc.status, tc.code)
			}
		})
	}
	var body ccErrors
	w.get(t, t.Context(), "abc", "/v3/apps/"+w.app.GUID, &body)
	if want := (fakecc.Error{Code: 1000, Title: "CF-InvalidAuthToken", Detail: "Invalid Auth Token"}); body.Errors[0] != want {
		t.Errorf("invalid token body = %+v", body)
	}
}

func TestAppVisibility(t *testing.T) {
	w := newWorld(t)
	w.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", w.space.GUID)
	for name, tc := range map[string]struct {
		token   string
		visible bool
	}{
		"space developer":     {w.developerToken, true},
		"space auditor":       {w.uaa.UserToken("auditor"), true},
		"org manager":         {w.orgManagerToken, true},
		"admin":               {w.uaa.UserToken("admin", fakeuaa.AddScopes(fakeuaa.ScopeAdmin)), true},
		"admin read only":     {w.readOnlyAdminTok, true},
		"global auditor":      {w.uaa.UserToken("ga", fakeuaa.Scopes(fakeuaa.ScopeGlobalAuditor)), true},
		"user without a role": {w.outsiderToken, false},
	} {
		t.Run(name, func(t *testing.T) {
			var app map[string]any
			status, _ := w.get(t, t.Context(), tc.token, "/v3/apps/"+w.app.GUID, &app)
			if !tc.visible {
				var body ccErrors
				status, _ = w.get(t, t.Context(), tc.token, "/v3/apps/"+w.app.GUID, &body)
				if status != 404 || body.Errors[0].Code != 10010 || body.Errors[0].Detail != "App not found" {
					t.Errorf("invisible app: %d %+v", status, body)
				}
				return
			}
			if status != 200 || app["guid"] != w.app.GUID || app["name"] != "my-app" || app["state"] != "STARTED" {
				t.Fatalf("app: %d %v", status, app)
			}
			space := app["relationships"].(map[string]any)["space"].(map[string]any)["data"].(map[string]any)["guid"]
			if space != w.space.GUID {
				t.Errorf("space relationship = %v", space)
			}
		})
	}

	var body struct {
		Included struct {
			Spaces []struct{ GUID, Name string } `json:"spaces"`
		} `json:"included"`
	}
	w.get(t, t.Context(), w.developerToken, "/v3/apps/"+w.app.GUID+"?include=space", &body)
	if len(body.Included.Spaces) != 1 || body.Included.Spaces[0].Name != "dev" {
		t.Errorf("include=space = %+v", body)
	}
	var list struct {
		Resources []struct{ GUID string } `json:"resources"`
	}
	w.get(t, t.Context(), w.developerToken, "/v3/apps?"+url.Values{"names": {"my-app,their-app"}}.Encode(), &list)
	if len(list.Resources) != 1 || list.Resources[0].GUID != w.app.GUID {
		t.Errorf("apps visible to the developer = %+v", list)
	}
}

type rolePage struct {
	Pagination struct {
		TotalResults int `json:"total_results"`
		TotalPages   int `json:"total_pages"`
		First, Last  struct{ Href string }
		Next         *struct{ Href string } `json:"next"`
		Previous     *struct{ Href string } `json:"previous"`
	} `json:"pagination"`
	Resources []struct {
		GUID, Type    string
		Relationships map[string]struct {
			Data *struct{ GUID string } `json:"data"`
		} `json:"relationships"`
	} `json:"resources"`
}

func TestRolesPagination(t *testing.T) {
	w := newWorld(t)
	for _, u := range []string{"a", "b"} {
		w.cc.AddRole(fakecc.RoleSpaceDeveloper, u, w.space.GUID)
	}
	w.cc.AddRole(fakecc.RoleSpaceManager, "c", w.space.GUID)
	admin := w.uaa.UserToken("admin", fakeuaa.AddScopes(fakeuaa.ScopeAdmin))

	var p rolePage
	q := url.Values{"types": {"space_developer"}, "space_guids": {w.space.GUID}, "per_page": {"1"}}
	w.get(t, t.Context(), admin, "/v3/roles?"+q.Encode(), &p)
	if p.Pagination.TotalResults != 3 || p.Pagination.TotalPages != 3 || p.Pagination.Next == nil || p.Pagination.Previous != nil {
		t.Fatalf("page 1 = %+v", p.Pagination)
	}
	var users []string
	pages := 1
	for {
		r := p.Resources[0]
		if r.Type != "space_developer" || r.Relationships["space"].Data.GUID != w.space.GUID || r.Relationships["organization"].Data != nil {
			t.Errorf("role = %+v", r)
		}
		users = append(users, r.Relationships["user"].Data.GUID)
		if p.Pagination.Next == nil {
			break
		}
		next := p.Pagination.Next.Href
		if !strings.HasPrefix(next, w.cc.URL+"/v3/roles?") || !strings.Contains(next, "space_guids="+w.space.GUID) {
			t.Fatalf("next = %s: not absolute or lost a filter", next)
		}
		p = rolePage{}
		w.get(t, t.Context(), admin, next, &p)
		pages++
	}
	if pages != 3 || strings.Join(users, ",") != "dev-user,a,b" || p.Pagination.Previous == nil {
		t.Errorf("walked %d pages, users %v, last page %+v", pages, users, p.Pagination)
	}

	p = rolePage{}
	w.get(t, t.Context(), w.outsiderToken, "/v3/roles?types=space_developer", &p)
	if p.Pagination.TotalResults != 0 || p.Pagination.TotalPages != 1 || p.Pagination.Next != nil || len(p.Resources) != 0 {
		t.Errorf("outsider sees %+v", p)
	}

	var e ccErrors
	for _, bad := range []string{"/v3/roles?per_page=0", "/v3/roles?per_page=5001", "/v3/roles?page=0", "/v3/roles?user_guid=x"} {
		if status, _ := w.get(t, t.Context(), admin, bad, &e); status != 400 || e.Errors[0].Code != 10005 {
			t.Errorf("%s = %d %+v", bad, status, e)
		}
	}
}

func TestProcessStatsShapes(t *testing.T) {
	w := newWorld(t)
	w.cc.SetInstances(w.app.GUID, "web",
		fakecc.ProcessInstance{Index: 2, State: fakecc.StateDown, Details: "insufficient resources: memory"},
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "10.0.16.5", InstanceGUID: "ig-0", InternalIP: "10.255.0.2", Uptime: 99},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateStarting},
	)
	var body struct {
		Resources []map[string]any `json:"resources"`
	}
	if status, _ := w.get(t, t.Context(), w.developerToken, "/v3/apps/"+w.app.GUID+"/processes/web/stats", &body); status != 200 {
		t.Fatalf("status %d", status)
	}
	if len(body.Resources) != 3 {
		t.Fatalf("resources = %v", body.Resources)
	}
	running, starting, down := body.Resources[0], body.Resources[1], body.Resources[2]
	for _, f := range []string{"type", "index", "state", "host", "instance_internal_ip", "uptime", "usage", "mem_quota",
		"disk_quota", "fds_quota", "isolation_segment", "details", "instance_ports", "routable", "instance_guid"} {
		if _, ok := running[f]; !ok {
			t.Errorf("RUNNING lacks %s", f)
		}
	}
	if running["host"] != "10.0.16.5" || running["instance_guid"] != "ig-0" || running["routable"] != true || running["index"] != 0.0 {
		t.Errorf("RUNNING = %v", running)
	}
	if h, ok := starting["host"]; !ok || h != "" {
		t.Errorf("STARTING host = %v, %v", h, ok)
	}
	if _, ok := starting["instance_guid"]; ok {
		t.Error("instance_guid sent although not set")
	}
	want := map[string]bool{"type": true, "index": true, "state": true, "uptime": true, "isolation_segment": true, "details": true, "routable": true}
	for f := range down {
		if !want[f] {
			t.Errorf("DOWN has %s", f)
		}
	}
	if len(down) != len(want) || down["details"] != "insufficient resources: memory" {
		t.Errorf("DOWN = %v", down)
	}

	var e ccErrors
	if status, _ := w.get(t, t.Context(), w.developerToken, "/v3/apps/"+w.app.GUID+"/processes/worker/stats", &e); status != 404 || e.Errors[0].Detail != "Process not found" {
		t.Errorf("unknown process: %d %+v", status, e)
	}
	if status, _ := w.get(t, t.Context(), w.outsiderToken, "/v3/apps/"+w.app.GUID+"/processes/web/stats", &e); status != 404 || e.Errors[0].Detail != "App not found" {
		t.Errorf("invisible app: %d %+v", status, e)
	}
}

// ssh_enabled combines the global, space and app switches; the reason
// names the first that is off, in the Cloud Controller's words, and is
// empty when SSH is enabled.
func TestSSHEnabled(t *testing.T) {
	w := newWorld(t)
	w.cc.AddRole(fakecc.RoleSpaceAuditor, "auditor", w.space.GUID)
	path := "/v3/apps/" + w.app.GUID + "/ssh_enabled"
	type sshEnabled struct {
		Enabled *bool   `json:"enabled"`
		Reason  *string `json:"reason"`
	}
	check := func(t *testing.T, token string, enabled bool, reason string) {
		t.Helper()
		var body sshEnabled
		status, _ := w.get(t, t.Context(), token, path, &body)
		if status != 200 || body.Enabled == nil || body.Reason == nil || *body.Enabled != enabled || *body.Reason != reason {
			t.Errorf("got %d %+v, want enabled %v reason %q", status, body, enabled, reason)
		}
	}
	steps := []struct {
		name    string
		set     func()
		enabled bool
		reason  string
	}{
		{"all on", func() {}, true, ""},
		{"app off", func() { w.cc.SetAppEnableSSH(w.app.GUID, false) }, false, "ssh is disabled for app"},
		{"space off too", func() { w.cc.SetSpaceAllowSSH(w.space.GUID, false) }, false, "ssh is disabled for space 'dev'"},
		{"globally off too", func() { w.cc.SetGlobalAllowSSH(false) }, false, "ssh is disabled globally"},
		{"globally off alone", func() {
			w.cc.SetSpaceAllowSSH(w.space.GUID, true)
			w.cc.SetAppEnableSSH(w.app.GUID, true)
		}, false, "ssh is disabled globally"},
		{"space off alone", func() {
			w.cc.SetGlobalAllowSSH(true)
			w.cc.SetSpaceAllowSSH(w.space.GUID, false)
		}, false, "ssh is disabled for space 'dev'"},
		{"all on again", func() { w.cc.SetSpaceAllowSSH(w.space.GUID, true) }, true, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.set()
			check(t, w.developerToken, s.enabled, s.reason)
			// Reading the policy needs only read access to the space.
			check(t, w.uaa.UserToken("auditor"), s.enabled, s.reason)
			check(t, w.readOnlyAdminTok, s.enabled, s.reason)
		})
	}
	// The other space's switch is its own.
	w.cc.SetSpaceAllowSSH(w.other.GUID, false)
	check(t, w.developerToken, true, "")

	var e ccErrors
	if status, _ := w.get(t, t.Context(), w.outsiderToken, path, &e); status != 404 || e.Errors[0].Code != 10010 || e.Errors[0].Detail != "App not found" {
		t.Errorf("invisible app: %d %+v", status, e)
	}
	if status, _ := w.get(t, t.Context(), w.developerToken, "/v3/apps/no-such-app/ssh_enabled", &e); status != 404 || e.Errors[0].Code != 10010 {
		t.Errorf("unknown app: %d %+v", status, e)
	}
	if status, _ := w.get(t, t.Context(), "", path, &e); status != 401 || e.Errors[0].Code != 10002 {
		t.Errorf("no token: %d %+v", status, e)
	}
	if status, _ := w.get(t, t.Context(), w.developerToken, path+"?include=space", &e); status != 400 || e.Errors[0].Code != 10005 {
		t.Errorf("unknown query parameter: %d %+v", status, e)
	}
	if n := w.cc.Requests(fakecc.GetSSHEnabled); n == 0 {
		t.Error("ssh_enabled requests are not counted")
	}
}

func TestFaults(t *testing.T) {
	w := newWorld(t)
	path := "/v3/apps/" + w.app.GUID

	w.cc.Inject(fakecc.GetApp, fakecc.Fault{Status: 503, Errors: []fakecc.Error{fakecc.KnownError(200002)}, Warnings: []string{"a, b", "c"}})
	var e ccErrors
	status, h := w.get(t, t.Context(), w.developerToken, path, &e)
	if status != 503 || e.Errors[0].Title != "CF-StatsUnavailable" {
		t.Errorf("injected error: %d %+v", status, e)
	}
	if got := h.Get("X-Cf-Warnings"); got != "a%2C+b,c" {
		t.Errorf("warnings header = %q", got)
	}

	w.cc.Inject(fakecc.GetApp, fakecc.Fault{Status: 500})
	if status, _ = w.get(t, t.Context(), w.developerToken, path, &e); status != 500 || e.Errors[0].Code != 10001 {
		t.Errorf("default error for 500: %d %+v", status, e)
	}

	w.cc.Inject(fakecc.GetApp, fakecc.Fault{Status: 502, Body: "<html>bad gateway</html>"})
	req, _ := http.NewRequest(http.MethodGet, w.cc.URL+path, nil)
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || string(b) != "<html>bad gateway</html>" {
		t.Errorf("raw body fault: %d %q", resp.StatusCode, b)
	}

	w.cc.Inject(fakecc.AnyEndpoint, fakecc.Fault{Drop: true})
	if _, err := w.client.Get(w.cc.URL + "/"); err == nil {
		t.Error("dropped connection gave an answer")
	}

	w.cc.Clear()
	w.cc.Inject(fakecc.GetApp, fakecc.Fault{Delay: time.Hour})
	// The delayed request is given up once the fake holds it, however
	// long the way there took (a new TLS connection on a busy machine).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, w.cc.URL+path, nil)
	delayed := make(chan error, 1)
	go func() {
		resp, err := w.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		delayed <- err
	}()
	actx, acancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer acancel()
	if err := w.cc.WaitRequests(actx, fakecc.GetApp, 4); err != nil {
		t.Fatalf("the delayed request: %v", err)
	}
	// An answer would come within milliseconds of the request; a busy
	// machine can only delay it, never make a held request look answered.
	select {
	case err := <-delayed:
		t.Fatalf("the delayed request was answered (%v) while the fake held it", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-delayed:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("delayed request: err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delayed request did not end within 10s of being given up")
	}

	w.cc.Clear()
	var app map[string]any
	if status, _ := w.get(t, t.Context(), w.developerToken, path, &app); status != 200 {
		t.Errorf("after Clear: %d", status)
	}
	if got := w.cc.Requests(fakecc.GetApp); got != 5 {
		t.Errorf("app requests = %d, want 5", got)
	}
	// The transport retries a GET whose connection was dropped.
	root := w.cc.Requests(fakecc.GetRoot)
	if root < 1 {
		t.Errorf("root requests = %d, want at least 1", root)
	}
	if got := w.cc.TotalRequests(); got != 5+root {
		t.Errorf("total requests = %d, want %d", got, 5+root)
	}
}

// The server must close even while a delayed answer is pending: Close
// waits for handlers.
func TestCloseEndsDelays(t *testing.T) {
	u := fakeuaa.New(t)
	cc := fakecc.New(t, u)
	cc.Inject(fakecc.AnyEndpoint, fakecc.Fault{Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := cc.Client().Get(cc.URL + "/")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for cc.TotalRequests() == 0 {
		select {
		case err := <-errc:
			t.Fatalf("request ended early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	closed := make(chan struct{})
	go func() { cc.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a delayed request")
	}
	<-errc
}

// `cf target -o ORG -s SPACE` asks for the org and then the space by
// name, one per page; each caller sees only what its roles reach.
func TestOrgsAndSpacesAsCfTargetAsks(t *testing.T) {
	w := newWorld(t)
	type list struct {
		Pagination struct {
			TotalResults int `json:"total_results"`
		} `json:"pagination"`
		Resources []struct {
			GUID          string `json:"guid"`
			Name          string `json:"name"`
			Relationships map[string]struct {
				Data *struct {
					GUID string `json:"guid"`
				} `json:"data"`
			} `json:"relationships"`
		} `json:"resources"`
	}
	var orgs list
	if status, _ := w.get(t, t.Context(), w.developerToken, "/v3/organizations?names=org&page=1&per_page=1", &orgs); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if len(orgs.Resources) != 1 || orgs.Resources[0].GUID != w.org.GUID || orgs.Resources[0].Name != "org" {
		t.Fatalf("orgs = %+v", orgs)
	}
	var spaces list
	w.get(t, t.Context(), w.developerToken, "/v3/spaces?names=dev&organization_guids="+w.org.GUID+"&page=1&per_page=1", &spaces)
	if len(spaces.Resources) != 1 || spaces.Resources[0].GUID != w.space.GUID ||
		spaces.Resources[0].Relationships["organization"].Data.GUID != w.org.GUID {
		t.Fatalf("spaces = %+v", spaces)
	}
	// The developer of dev sees neither the other org nor its space.
	w.get(t, t.Context(), w.developerToken, "/v3/organizations?names=other-org", &orgs)
	w.get(t, t.Context(), w.developerToken, "/v3/spaces?names=prod", &spaces)
	if len(orgs.Resources) != 0 || len(spaces.Resources) != 0 {
		t.Fatalf("a stranger's org or space is visible: %+v %+v", orgs, spaces)
	}
	// An org manager sees the org's spaces; a global reader sees all.
	w.get(t, t.Context(), w.orgManagerToken, "/v3/spaces", &spaces)
	if spaces.Pagination.TotalResults != 1 {
		t.Errorf("org manager sees %d spaces", spaces.Pagination.TotalResults)
	}
	w.get(t, t.Context(), w.readOnlyAdminTok, "/v3/organizations", &orgs)
	if orgs.Pagination.TotalResults != 2 {
		t.Errorf("read-only admin sees %d orgs", orgs.Pagination.TotalResults)
	}
	var e ccErrors
	if status, _ := w.get(t, t.Context(), w.developerToken, "/v3/spaces?name=dev", &e); status != http.StatusBadRequest || e.Errors[0].Code != 10005 {
		t.Errorf("misspelt filter: %d %+v", status, e)
	}
	if n := w.cc.Requests(fakecc.ListSpaces); n != 4 {
		t.Errorf("%d space lists counted, want 4", n)
	}
}

// A certificate for the names a cf CLI reaches the fake by.
func TestServerNames(t *testing.T) {
	cc := fakecc.New(t, fakeuaa.New(t), fakecc.ServerNames("api.sys.example.test"))
	tr := &http.Transport{TLSClientConfig: cc.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	tr.TLSClientConfig.ServerName = "api.sys.example.test"
	resp, err := (&http.Client{Transport: tr}).Get(cc.URL + "/")
	if err != nil {
		t.Fatalf("with server name api.sys.example.test: %v", err)
	}
	resp.Body.Close()
	tr.TLSClientConfig.ServerName = "api.other.test"
	if resp, err := (&http.Client{Transport: tr}).Get(cc.URL + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("the certificate holds a name it was not given")
	}
}
