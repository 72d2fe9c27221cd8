package realcf_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/realcf"
)

// TestGardenAsDiegoUsesIt checks, in both networking modes, what the
// agent's tests rely on: containers carry the properties Diego's executor
// sets, serve HTTP to the host, have a network namespace of their own
// where the mode says, and garden answers unknown handles as it does.
func TestGardenAsDiegoUsesIt(t *testing.T) {
	for _, mode := range []realcf.GardenNetworking{realcf.GdnNetworking, realcf.PluginNetworking} {
		t.Run(mode.String(), func(t *testing.T) {
			g := realcf.StartGarden(t, mode)
			c := g.Create(t, realcf.AppContainer{AppGUID: "app-guid-1", Index: 2, Owner: "cell-executor"})
			t.Logf("properties: %v", c.Properties)
			for k, want := range map[string]string{
				"network.app_id":             "app-guid-1",
				"executor:owner":             "cell-executor",
				"network.container_workload": "app",
			} {
				if got := c.Properties[k]; got != want {
					t.Errorf("property %s = %q, want %q", k, got, want)
				}
			}
			var lc struct{ Index *int }
			if err := json.Unmarshal([]byte(c.Properties["log_config"]), &lc); err != nil || lc.Index == nil || *lc.Index != 2 {
				t.Errorf("log_config %q: index %v, %v", c.Properties["log_config"], lc.Index, err)
			}
			status, body, err := g.Get("/containers?network.app_id=app-guid-1&executor%3Aowner=cell-executor")
			if err != nil || status != 200 || !strings.Contains(string(body), c.Handle) {
				t.Errorf("list by properties: %d %s %v", status, body, err)
			}

			// What the fakes must answer alike.
			status, body, err = g.Get("/containers/no-such-handle/properties")
			if err != nil || status != 200 || strings.TrimSpace(string(body)) != "null" {
				t.Errorf("properties of an unknown handle: %d %q %v", status, body, err)
			}
			status, body, err = g.Get("/containers/no-such-handle/info")
			if err != nil || status != 404 || !strings.Contains(string(body), `"Type":"ContainerNotFoundError"`) {
				t.Errorf("info of an unknown handle: %d %q %v", status, body, err)
			}

			ns := g.Netns(t, c.Handle)
			var host, ctr syscall.Stat_t
			if err := syscall.Stat("/proc/self/ns/net", &host); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Stat(ns, &ctr); err != nil || ctr.Ino == host.Ino {
				t.Fatalf("namespace %s: %v (inode %d, the host's %d)", ns, err, ctr.Ino, host.Ino)
			}
			out, err := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link", "show").CombinedOutput()
			if err != nil {
				t.Fatalf("links in %s: %v: %s", ns, err, out)
			}
			hasEth0 := strings.Contains(string(out), ": eth0@")
			if hasEth0 != (mode == realcf.PluginNetworking) {
				t.Errorf("%s networking: eth0 in the container is %v:\n%s", mode, hasEth0, out)
			}
			g.ServeHTTP(t, c, "hello from "+c.Handle)

			g.Destroy(t, c.Handle)
			if status, body, _ := g.Get("/containers/" + c.Handle + "/properties"); status != 200 || strings.TrimSpace(string(body)) != "null" {
				t.Errorf("properties after destroy: %d %q", status, body)
			}
			if _, err := os.Stat(g.RuncRoot + "/" + c.Handle); !os.IsNotExist(err) {
				t.Errorf("runc state after destroy: %v", err)
			}
		})
	}
}
