package fakebosh_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fakebosh"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

func get(t *testing.T, d *fakebosh.Director, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := d.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func setup(t *testing.T) (*fakeuaa.UAA, *fakebosh.Director) {
	u := fakeuaa.New(t, fakeuaa.DirectorUAA())
	d := fakebosh.New(t, u)
	d.AddDeployment(fakebosh.Deployment{Name: "cf", Teams: []string{"platform"}},
		fakebosh.NewVM("router", 0, "z1", "10.0.1.5"), fakebosh.NewVM("router", 1, "z2", "10.0.2.5"),
		fakebosh.Instance{Group: "smoke-tests", Index: 0, ID: "e7c1", AZ: "z1"})
	d.AddDeployment(fakebosh.Deployment{Name: "mysql"})
	return u, d
}

// /info needs no token and says where users log in, as the director
// does: the bosh CLI and pcap-server-api find the director's UAA there.
func TestInfo(t *testing.T) {
	u, d := setup(t)
	status, body := get(t, d, "/info", "")
	var info struct {
		Name, UUID         string
		UserAuthentication struct {
			Type    string
			Options struct {
				URL  string
				URLs []string
			}
		} `json:"user_authentication"`
	}
	if err := json.Unmarshal(body, &info); err != nil || status != 200 {
		t.Fatalf("%d %s: %v", status, body, err)
	}
	if info.UUID != d.UUID || info.UserAuthentication.Type != "uaa" || info.UserAuthentication.Options.URL != u.URL {
		t.Fatalf("info %+v", info)
	}
}

// Each deployment lists its teams, and the list holds only what the
// caller may read.
func TestDeploymentsByTeam(t *testing.T) {
	u, d := setup(t)
	names := func(token string) string {
		status, body := get(t, d, "/deployments", token)
		var deps []struct {
			Name  string
			Teams []string
		}
		if err := json.Unmarshal(body, &deps); err != nil || status != 200 {
			return string(body)
		}
		var out []string
		for _, dep := range deps {
			out = append(out, dep.Name+"("+strings.Join(dep.Teams, ",")+")")
		}
		return strings.Join(out, " ")
	}
	for token, want := range map[string]string{
		u.ClientToken("admin", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)):                   "cf(platform) mysql()",
		u.ClientToken("reader", fakeuaa.Scopes(fakeuaa.ScopeBoshRead)):                   "cf(platform) mysql()",
		u.ClientToken("platform", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("platform"))):     "cf(platform)",
		u.ClientToken("data", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("data"))):             "",
		u.ClientToken("team-reader", fakeuaa.Scopes(fakeuaa.BoshTeamRead("platform"))):   `{"code":600000`,
		u.ClientToken("uuid-admin", fakeuaa.Scopes(fakeuaa.BoshDirectorAdmin(d.UUID))):   "cf(platform) mysql()",
		u.ClientToken("nothing", fakeuaa.Scopes("openid"), fakeuaa.Audience("bosh_cli")): `{"code":600000`,
	} {
		if got := names(token); !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("deployments: %q, want %q", got, want)
		}
	}
}

// Instances come in the director's shape; a VM-less instance has no cid,
// agent or IPs. The director's refusals are its own: plain text for a bad
// token, 401 code 600000 for a scope that does not cover the deployment,
// 404 code 70000 for a deployment that does not exist.
func TestInstancesAndRefusals(t *testing.T) {
	u, d := setup(t)
	admin := u.ClientToken("admin", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin))
	status, body := get(t, d, "/deployments/cf/instances", admin)
	var instances []map[string]any
	if err := json.Unmarshal(body, &instances); err != nil || status != 200 || len(instances) != 3 {
		t.Fatalf("%d %s: %v", status, body, err)
	}
	if r := instances[0]; r["job"] != "router" || r["index"] != 0.0 || r["az"] != "z1" || r["cid"] == nil || r["expects_vm"] != true ||
		len(r["ips"].([]any)) != 1 || r["ips"].([]any)[0] != "10.0.1.5" {
		t.Errorf("router/0 %v", r)
	}
	if e := instances[2]; e["cid"] != nil || e["agent_id"] != nil || len(e["ips"].([]any)) != 0 || e["vm_created_at"] != nil {
		t.Errorf("a VM-less instance %v", e)
	}
	for _, c := range []struct {
		path, token string
		status      int
		body        string
	}{
		{"/deployments/cf/instances", "", 401, "Not authorized: '/deployments/cf/instances'"},
		{"/deployments/cf/instances", fakeuaa.New(t).UserToken("cf-user"), 401, "Not authorized"},
		{"/deployments/cf/instances", u.RefreshToken("ops", fakeuaa.Scopes(fakeuaa.ScopeBoshAdmin)), 401, "Not authorized"},
		{"/deployments/cf/instances", u.ClientToken("data", fakeuaa.Scopes(fakeuaa.BoshTeamAdmin("data"))), 401,
			`{"code":600000,"description":"Require one of the scopes: bosh.admin, bosh.` + d.UUID + `.admin, bosh.teams.platform.admin, bosh.teams.platform.read, bosh.read, bosh.` + d.UUID + `.read"}`},
		{"/deployments/cf/instances", u.ClientToken("reader", fakeuaa.Scopes(fakeuaa.ScopeBoshRead)), 200, `"job":"router"`},
		{"/deployments/nope/instances", admin, 404, `{"code":70000,"description":"Deployment 'nope' doesn't exist"}`},
	} {
		status, body := get(t, d, c.path, c.token)
		if status != c.status || !strings.Contains(string(body), c.body) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, status, body, c.status, c.body)
		}
	}
	if n := d.Requests(fakebosh.ListInstances); n != 7 {
		t.Errorf("%d instance requests counted, want 7", n)
	}
}
