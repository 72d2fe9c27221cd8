package e2e

import (
	"bytes"
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

// stopAs sends the graceful stop of a capture to api and returns its status.
func stopAs(t *testing.T, api *apiProc, appGUID, captureID, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, api.url+"/v1/apps/"+appGUID+"/capture/"+captureID, nil)
	req.Header.Set("Authorization", "bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The gorouter balances every request on its own, so the stop of a
// capture may reach another API replica than the one streaming it. The
// replicas share nothing, but both reach the agent, which knows the
// capture and its owner: the stream ends gracefully all the same, and
// nobody but the owner (or an admin) may stop it.
func TestStopThroughTheOtherReplica(t *testing.T) {
	netnstest.RequireRoot(t)
	f := newFoundation(t)
	colleague := "dev-user-2"
	f.cc.AddRole(fakecc.RoleSpaceDeveloper, colleague, f.space.GUID)
	p := newPKI(t)
	a := newApp(t)
	streaming := startAPI(t, p, nil, f.cfMode)
	other := startAPI(t, p, nil, func(c *apiconfig.Config) {
		f.cfMode(c)
		c.ID = "pcap-server-api/other"
	})
	f.runningOnBoth(t, p, a, streaming, other)

	owner := f.uaa.UserToken(f.developer)
	resp := startCaptureAs(t, streaming, f.app.GUID, owner, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("capture: %s", finish(t, resp).body)
	}
	id := resp.Header.Get("Pcap-Capture-Id")
	a.send(t, "before-stop", 30)
	head := readPackets(t, resp, 30)

	for _, api := range []*apiProc{streaming, other} {
		if got := stopAs(t, api, f.app.GUID, id, f.uaa.UserToken(colleague)); got != http.StatusForbidden {
			t.Fatalf("a colleague's stop through %s: %d, want 403", api.url, got)
		}
	}
	// Who cannot see the app learns nothing of its captures.
	for _, api := range []*apiProc{streaming, other} {
		if got := stopAs(t, api, f.app.GUID, id, f.uaa.UserToken(f.otherSpace)); got != http.StatusNotFound {
			t.Fatalf("a stranger's stop through %s: %d, want 404", api.url, got)
		}
	}
	if got := stopAs(t, other, f.app.GUID, "0123456789abcdef", owner); got != http.StatusNotFound {
		t.Fatalf("stop of an unknown capture: %d, want 404", got)
	}
	if got := stopAs(t, other, f.app.GUID, id, owner); got != http.StatusAccepted {
		t.Fatalf("the owner's stop through the other replica: %d, want 202", got)
	}

	rest := finish(t, resp)
	tr := rest.trailer
	if tr.Get("Pcap-End-Reason") != "requested" || tr.Get("Pcap-Dropped") != "0" || tr.Get("Pcap-Dropped-Detail") != "kernel=0 agent=0 api=0" {
		t.Fatalf("trailers %v", tr)
	}
	file := filepath.Join(t.TempDir(), "stopped.pcap")
	if err := os.WriteFile(file, append(bytes.Clone(head), rest.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	rows := tshark(t, file, "udp.payload")
	if len(rows) != 30 || tr.Get("Pcap-Packets") != "30" {
		t.Fatalf("%d packets in the file, trailer says %s", len(rows), tr.Get("Pcap-Packets"))
	}
	// An admin may stop anyone's capture.
	resp = startCaptureAs(t, streaming, f.app.GUID, owner, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	admin := f.uaa.UserToken("admin", fakeuaa.AddScopes("cloud_controller.admin"))
	if got := stopAs(t, other, f.app.GUID, resp.Header.Get("Pcap-Capture-Id"), admin); got != http.StatusAccepted {
		t.Fatalf("an admin's stop: %d, want 202", got)
	}
	if r := finish(t, resp); r.trailer.Get("Pcap-End-Reason") != "requested" {
		t.Fatalf("after an admin's stop: trailers %v", r.trailer)
	}

	audit, err := os.ReadFile(other.audit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"event":"stop"`) || !strings.Contains(string(audit), `"event":"stop_refused"`) {
		t.Fatalf("the other replica's audit log lacks the stop and the refusal:\n%s", audit)
	}
}
