package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// foundation is a fake Cloud Foundry: UAA and a Cloud Controller with one
// org, a space "dev" holding my-app, and a space "prod".
type foundation struct {
	uaa        *fakeuaa.UAA
	cc         *fakecc.CloudController
	space      fakecc.Space
	other      fakecc.Space
	app        fakecc.App
	ccCA       string // files
	uaaCA      string
	caBundle   string // both CAs, for SSL_CERT_FILE of CLI processes
	developer  string // user ids
	auditor    string
	otherSpace string
}

func newFoundation(t *testing.T, opts ...fakecc.Option) *foundation {
	t.Helper()
	f := &foundation{uaa: fakeuaa.New(t), developer: "dev-user", auditor: "auditor-user", otherSpace: "prod-dev-user"}
	f.cc = fakecc.New(t, f.uaa, opts...)
	org := f.cc.AddOrg("org")
	f.space = f.cc.AddSpace(org.GUID, "dev")
	f.other = f.cc.AddSpace(org.GUID, "prod")
	f.app = f.cc.AddApp(f.space.GUID, appName)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, f.developer, f.space.GUID)
	f.cc.AddRole(fakecc.RoleSpaceAuditor, f.auditor, f.space.GUID)
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, f.otherSpace, f.other.GUID)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	f.ccCA = write("cc-ca.pem", f.cc.CA.CertPEM())
	f.uaaCA = write("uaa-ca.pem", f.uaa.CA.CertPEM())
	f.caBundle = write("bundle.pem", append(f.cc.CA.CertPEM(), f.uaa.CA.CertPEM()...))
	return f
}

// cfMode turns a test API config from dev mode to the foundation.
func (f *foundation) cfMode(c *apiconfig.Config) {
	c.Dev = nil
	c.CloudController = &apiconfig.CloudController{URL: f.cc.URL, CA: f.ccCA}
	c.UAA = apiconfig.UAA{CA: f.uaaCA} // issuer found through the CC root document
}

// running gives the app's instances, on the cell 127.0.0.1 unless a host
// is given.
func (f *foundation) running(instances ...fakecc.ProcessInstance) {
	f.cc.SetInstances(f.app.GUID, "web", instances...)
}

// startCaptureAs sends a capture request with token and returns once the
// status line is in.
func startCaptureAs(t *testing.T, api *apiProc, appGUID, token string, q url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, api.url+"/v1/apps/"+appGUID+"/capture?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The API against a Cloud Foundry: who may capture what, through HTTP.
func TestCloudFoundryAuthorization(t *testing.T) {
	netnstest.RequireRoot(t)
	f := newFoundation(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, nil, f.cfMode)
	f.running(
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "handle-0"},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateDown},
	)
	startAgent(t, p, api, "127.0.0.1", map[string]string{f.app.GUID + "/0": a.pair.App.Path()})

	one := url.Values{"instance": {"0"}, "packets": {"1"}, "filter": {"udp"}}
	cases := []struct {
		name   string
		token  string
		query  url.Values
		status int
		detail string
	}{
		{"space developer", f.uaa.UserToken(f.developer), one, 200, ""},
		{"admin", f.uaa.UserToken("admin", fakeuaa.AddScopes("cloud_controller.admin")), one, 200, ""},
		{"auditor", f.uaa.UserToken(f.auditor), one, 403, `SpaceDeveloper role in space \"dev\"`},
		{"developer of another space", f.uaa.UserToken(f.otherSpace), one, 404, "not found"},
		{"expired token", f.uaa.UserToken(f.developer, fakeuaa.Expired()), one, 401, "expired"},
		{"refresh token", f.uaa.RefreshToken(f.developer), one, 401, "refresh token"},
		{"no token", "", one, 401, "missing"},
		{"instance down", f.uaa.UserToken(f.developer), url.Values{"instance": {"1"}}, 409, "DOWN"},
		{"instance missing", f.uaa.UserToken(f.developer), url.Values{"instance": {"7"}}, 404, "7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.cc.TotalRequests()
			resp := startCaptureAs(t, api, f.app.GUID, c.token, c.query)
			if resp.StatusCode == 200 {
				a.send(t, "cf", 3)
			}
			r := finish(t, resp)
			if r.status != c.status || !strings.Contains(string(r.body), c.detail) {
				t.Fatalf("got %d %.300s, want %d with %q", r.status, r.body, c.status, c.detail)
			}
			if c.status == 401 && f.cc.TotalRequests() != before {
				t.Fatal("the Cloud Controller was asked about a token that failed verification")
			}
			if c.status == 200 {
				if rows := tshark(t, r.file, "udp.payload"); len(rows) != 1 {
					t.Fatalf("%d packets", len(rows))
				}
			}
		})
	}
	data, err := os.ReadFile(api.audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"user_id":"dev-user"`, `"user_name":"dev-user"`, `"client_id":"cf"`, `"event":"refused"`, `"status":403`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	logs := api.logs.String()
	for _, c := range cases {
		if c.token == "" {
			continue
		}
		// Any part of a token: its signature is the secret.
		sig := c.token[strings.LastIndex(c.token, ".")+1:]
		if strings.Contains(string(data), sig) || strings.Contains(logs, sig) {
			t.Fatalf("a token is in the audit log or the API's log")
		}
	}
	if !strings.Contains(logs, `"capture_id"`) {
		t.Fatal("the API logged no capture id")
	}
}
