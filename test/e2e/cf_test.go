package e2e

import (
	"encoding/json"
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

// runningOnBoth runs the app's instance 0 on the cell 127.0.0.1, whose
// agent holds a session to each of two API replicas, as agents do.
func (f *foundation) runningOnBoth(t *testing.T, p *pki, a *app, first, second *apiProc) {
	t.Helper()
	f.running(fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "handle-0"})
	cfg := agentConfig(p, first, "127.0.0.1", map[string]string{f.app.GUID + "/0": a.pair.App.Path()})
	cfg.API.Addresses = append(cfg.API.Addresses, second.tunnel)
	startAgentWith(t, first, cfg)
	waitAgent(t, second, "127.0.0.1")
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

// A capture of an app reads what cf ssh into it could, so by default the
// API follows Cloud Foundry's SSH policy: when the Cloud Controller says
// SSH is disabled for the app, a space developer gets a 403 with its
// reason (and the refusal is audited with it), an admin still captures,
// and so does everyone on a replica with authorization.follow_ssh_policy
// false. Stopping a capture is not governed by the policy.
func TestCloudFoundrySSHPolicy(t *testing.T) {
	netnstest.RequireRoot(t)
	f := newFoundation(t)
	p := newPKI(t)
	a := newApp(t)
	following := startAPI(t, p, nil, f.cfMode)
	ignoring := startAPI(t, p, nil, func(c *apiconfig.Config) {
		f.cfMode(c)
		c.ID = "pcap-server-api/ignoring-ssh-policy"
		c.Authorization.FollowSSHPolicy = false
	})
	f.runningOnBoth(t, p, a, following, ignoring)

	developer := f.uaa.UserToken(f.developer)
	admin := f.uaa.UserToken("admin", fakeuaa.AddScopes("cloud_controller.admin"))
	one := url.Values{"packets": {"1"}, "filter": {"udp"}}
	captures := func(t *testing.T, api *apiProc, token, tag string) {
		t.Helper()
		resp := startCaptureAs(t, api, f.app.GUID, token, one)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d %.300s, want 200", resp.StatusCode, finish(t, resp).body)
		}
		a.send(t, tag, 3)
		r := finish(t, resp)
		if rows := tshark(t, r.file, "udp.payload"); len(rows) != 1 || rows[0][0] != hexOf(payload(tag, 0)) {
			t.Fatalf("packets %v", rows)
		}
	}
	refused := func(t *testing.T, api *apiProc, token, reason string) {
		t.Helper()
		resp := startCaptureAs(t, api, f.app.GUID, token, one)
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("captures, want a 403 with %q", reason) // the cleanup closes the stream
		}
		r := finish(t, resp)
		var prob struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(r.body, &prob); err != nil || r.status != http.StatusForbidden || prob.Status != http.StatusForbidden ||
			r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(prob.Detail, reason) {
			t.Fatalf("got %d %s %.300s, want a 403 problem with %q", r.status, r.header.Get("Content-Type"), r.body, reason)
		}
	}

	f.cc.SetSpaceAllowSSH(f.space.GUID, false)
	t.Run("space developer", func(t *testing.T) { refused(t, following, developer, `ssh is disabled for space 'dev'`) })
	t.Run("admin", func(t *testing.T) { captures(t, following, admin, "admin") })
	t.Run("follow_ssh_policy false", func(t *testing.T) { captures(t, ignoring, developer, "ignored") })
	t.Run("app switch", func(t *testing.T) {
		f.cc.SetSpaceAllowSSH(f.space.GUID, true)
		f.cc.SetAppEnableSSH(f.app.GUID, false)
		refused(t, following, developer, `ssh is disabled for app`)
	})
	t.Run("global switch", func(t *testing.T) {
		f.cc.SetGlobalAllowSSH(false)
		refused(t, following, developer, `ssh is disabled globally`)
	})
	t.Run("all switches on", func(t *testing.T) {
		f.cc.SetGlobalAllowSSH(true)
		f.cc.SetAppEnableSSH(f.app.GUID, true)
		captures(t, following, developer, "allowed")
	})

	// The owner stops a capture through a replica that follows the
	// policy and does not stream it: that replica asks the Cloud
	// Controller about the app, not about SSH, and the agent ends it.
	t.Run("stop", func(t *testing.T) {
		f.cc.SetSpaceAllowSSH(f.space.GUID, false)
		resp := startCaptureAs(t, ignoring, f.app.GUID, developer, url.Values{"filter": {"udp"}, "duration": {"1m"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("capture: %s", finish(t, resp).body)
		}
		a.send(t, "before-stop", 2)
		head := readPackets(t, resp, 2)
		if got := stopAs(t, following, f.app.GUID, resp.Header.Get("Pcap-Capture-Id"), developer); got != http.StatusAccepted {
			t.Fatalf("the owner's stop: %d, want 202", got)
		}
		rest := finish(t, resp)
		if got := rest.trailer.Get("Pcap-End-Reason"); got != "requested" {
			t.Fatalf("end reason %q after a stop, trailers %v", got, rest.trailer)
		}
		file := filepath.Join(t.TempDir(), "stopped.pcap")
		if err := os.WriteFile(file, append(head, rest.body...), 0o644); err != nil {
			t.Fatal(err)
		}
		if rows := tshark(t, file, "udp.payload"); len(rows) != 2 {
			t.Fatalf("%d packets in the stopped capture", len(rows))
		}
	})

	// Each refusal is audited with its reason, as the user saw it.
	data, err := os.ReadFile(following.audit)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec struct {
			Event  string `json:"event"`
			UserID string `json:"user_id"`
			Reason string `json:"reason"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec.Event == "refused" && rec.Status == http.StatusForbidden && rec.UserID == f.developer {
			reasons = append(reasons, rec.Reason)
		}
	}
	for i, want := range []string{"ssh is disabled for space 'dev'", "ssh is disabled for app", "ssh is disabled globally"} {
		if i >= len(reasons) || !strings.Contains(reasons[i], want) || !strings.Contains(reasons[i], `"`+appName+`"`) {
			t.Errorf("audited refusals %q, want %q as refusal %d", reasons, want, i+1)
		}
	}
}
