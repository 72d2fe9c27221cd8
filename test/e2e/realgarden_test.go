package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
)

// realGardenAgent runs the agent binary on the cell 127.0.0.1 against g,
// configured as on a Diego cell of g's networking: the bind mounts of
// the network plugin where silk puts them, runc's state where it is.
func realGardenAgent(t *testing.T, p *pki, api *apiProc, g *realcf.Garden) {
	t.Helper()
	cfg := agentConfig(p, api, "127.0.0.1", nil)
	cfg.Dev = nil
	cfg.Garden.Network, cfg.Garden.Address = "unix", g.Socket // the owner name: the default, executor
	if g.NetnsDir != "" {
		cfg.ContainerNetnsDir = g.NetnsDir
	}
	if cfg.RuncRoots[len(cfg.RuncRoots)-1] != g.RuncRoot {
		t.Fatalf("the default runc_roots %v do not end with gdn's %s", cfg.RuncRoots, g.RuncRoot)
	}
	startAgentProcessWith(t, api, cfg)
}

// httpGet fetches url on a connection of its own, so that each request
// is a whole TCP exchange in the capture, and returns the body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// The agent against real garden, in garden's own networking and with a
// bind-mounted namespace like silk's: one app's two instances, found by
// handle (the instance guid the Cloud Controller reports) and by Diego's
// properties, are captured on their interface by default (eth0 with
// silk; gdn names it otherwise), each interface holds that container's
// traffic and nothing else, and when garden destroys the containers
// mid-capture the capture ends container_gone with every exchange made
// before. A handle garden does not have is "not on this cell".
func TestRealGardenCapture(t *testing.T) {
	for _, mode := range []realcf.GardenNetworking{realcf.GdnNetworking, realcf.PluginNetworking} {
		t.Run(mode.String(), func(t *testing.T) {
			g := realcf.StartGarden(t, mode)
			f := newFoundation(t)
			p := newPKI(t)
			c0 := g.Create(t, realcf.AppContainer{AppGUID: f.app.GUID, Index: 0})
			c1 := g.Create(t, realcf.AppContainer{AppGUID: f.app.GUID, Index: 1})
			other := g.Create(t, realcf.AppContainer{AppGUID: "0ther0app-1111-4222-8333-444455556666", Index: 0})
			urls := map[string]string{}
			bodies := map[string]string{}
			for name, c := range map[string]*realcf.Container{"0": c0, "1": c1, "other": other} {
				bodies[name] = "instance " + name + " in " + c.Handle
				urls[name] = g.ServeHTTP(t, c, bodies[name])
			}
			missing := fakegarden.InstanceGUID()
			f.running(
				fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: c0.Handle},
				fakecc.ProcessInstance{Index: 1, State: fakecc.StateRunning, Host: "127.0.0.1"}, // an older CC: by properties
				fakecc.ProcessInstance{Index: 2, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: missing},
			)
			api := startAPI(t, p, nil, f.cfMode)
			realGardenAgent(t, p, api, g)
			token := f.uaa.UserToken(f.developer)

			// The Cloud Controller is ahead of the cell: garden has no
			// such container.
			r := finish(t, startCaptureAs(t, api, f.app.GUID, token, url.Values{"instance": {"2"}}))
			want := "cell 127.0.0.1: no container of app " + f.app.GUID + " instance 2 on this cell (instance guid " + missing + ")"
			if r.status != 404 || !strings.Contains(string(r.body), want) {
				t.Errorf("unknown handle: %d %s, want 404 with %q", r.status, r.body, want)
			}

			resp := startCaptureAs(t, api, f.app.GUID, token, url.Values{
				"instance": {"0,1"}, "format": {"pcapng"}, "filter": {"tcp port 8080"}, "duration": {"5m"}})
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("capture: %d %s", resp.StatusCode, b)
			}
			if errs := resp.Header.Get("Pcap-Instance-Errors"); errs != "" {
				t.Fatalf("instance errors: %s", errs)
			}
			for range 3 {
				for _, name := range []string{"0", "1", "other"} {
					if got := httpGet(t, urls[name]); got != bodies[name]+"\n" {
						t.Fatalf("GET %s: %q", urls[name], got)
					}
				}
			}
			// At once, with the last exchanges still in libpcap's ring.
			destroyed := time.Now()
			g.Destroy(t, c0.Handle)
			g.Destroy(t, c1.Handle)
			r = finish(t, resp)
			t.Logf("%s: the capture ended %v after the destroys began", mode, time.Since(destroyed).Round(time.Millisecond))
			if reason := r.trailer.Get("Pcap-End-Reason"); reason != "container_gone" {
				t.Errorf("end reason %q, want container_gone", reason)
			}

			// Each interface: only its container's address, and all three
			// answers it gave.
			ips := map[string]string{appName + "/0": c0.IP.String(), appName + "/1": c1.IP.String()}
			answers := map[string]int{}
			for _, row := range tshark(t, r.file, "frame.interface_name", "ip.src", "ip.dst", "http.file_data") {
				iface, src, dst, body := row[0], row[1], row[2], row[3]
				ip, ok := ips[iface]
				if !ok {
					t.Fatalf("packet on interface %q", iface)
				}
				if src != ip && dst != ip {
					t.Fatalf("interface %s (container %s): packet %s -> %s", iface, ip, src, dst)
				}
				if body != "" {
					answers[iface]++
					// tshark shows the newline escaped.
					if want := bodies[strings.TrimPrefix(iface, appName+"/")] + `\n`; body != want {
						t.Errorf("interface %s: answer %q, want %q", iface, body, want)
					}
				}
			}
			if answers[appName+"/0"] != 3 || answers[appName+"/1"] != 3 {
				t.Errorf("answers per interface %v, want 3 each", answers)
			}
		})
	}
}
