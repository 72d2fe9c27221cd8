package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

// cell plays a Diego cell: a fake garden, and runc state pointing each
// container handle at a real network namespace.
type cell struct {
	garden   *fakegarden.Garden
	runcRoot string
	netnsDir string
}

func newCell(t *testing.T) *cell {
	t.Helper()
	return &cell{garden: fakegarden.New(t), runcRoot: t.TempDir(), netnsDir: t.TempDir()}
}

// add registers a Diego app container for app a and records its network
// namespace where garden's runc would: <root>/<handle>/state.json.
func (c *cell) add(t *testing.T, a *app, appGUID string, index int) string {
	t.Helper()
	return c.addWithInit(t, a, appGUID, index, 0)
}

// addWithInit is add with initPID as the container's init process in
// runc's state (0: none).
func (c *cell) addWithInit(t *testing.T, a *app, appGUID string, index, initPID int) string {
	t.Helper()
	handle := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: appGUID, AppName: "app-" + appGUID[:4], Index: index})
	dir := filepath.Join(c.runcRoot, handle)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	state, _ := json.Marshal(map[string]any{
		"id":               handle,
		"init_process_pid": initPID,
		"namespace_paths":  map[string]string{"NEWNET": a.pair.App.Path()},
	})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	return handle
}

// agentConfig is the production agent configuration for this cell.
func (c *cell) agentConfig(p *pki, api *apiProc, cellIP string) agentconfig.Config {
	cfg := agentConfig(p, api, cellIP, nil)
	cfg.Dev = nil
	cfg.Garden.Network, cfg.Garden.Address = c.garden.Network, c.garden.Address
	cfg.ContainerNetnsDir = c.netnsDir
	cfg.RuncRoots = []string{c.runcRoot}
	return cfg
}

// Two instances of an app in two network namespaces, found by handle
// through garden, captured into one pcapng through the agent binary.
func TestGardenByHandleTwoInstances(t *testing.T) {
	f := newFoundation(t)
	p := newPKI(t)
	a0, a1 := newApp(t), newApp(t)
	c := newCell(t)
	h0 := c.add(t, a0, f.app.GUID, 0)
	h1 := c.add(t, a1, f.app.GUID, 1)
	f.running(
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: h0},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: h1},
	)
	api := startAPI(t, p, nil, f.cfMode)
	startAgentProcessWith(t, api, c.agentConfig(p, api, "127.0.0.1"))

	resp := startCaptureAs(t, api, f.app.GUID, f.uaa.UserToken(f.developer), url.Values{"format": {"pcapng"}, "filter": {"udp"}, "packets": {"20"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	a0.send(t, "zero", 10)
	a1.send(t, "one", 10)
	r := finish(t, resp)
	rows := tshark(t, r.file, "frame.interface_name", "udp.payload")
	perIface := map[string]int{}
	for _, row := range rows {
		perIface[row[0]]++
	}
	if len(rows) != 20 || perIface[appName+"/0"] != 10 || perIface[appName+"/1"] != 10 {
		t.Fatalf("packets per interface: %v", perIface)
	}
	if got := c.garden.Requests(fakegarden.ListContainers); got != 0 {
		t.Fatalf("garden listed containers %d times although the handles were known", got)
	}
}

// An older Cloud Controller gives no instance GUID: the agent finds the
// container by app and index among three containers of two apps.
func TestGardenPicksTheContainerByIndex(t *testing.T) {
	f := newFoundation(t)
	p := newPKI(t)
	c := newCell(t)
	apps := map[string]*app{"A0": newApp(t), "A1": newApp(t), "B1": newApp(t)}
	otherApp := "b0b0b0b0-1111-4222-8333-444455556666"
	c.add(t, apps["A0"], f.app.GUID, 0)
	c.add(t, apps["A1"], f.app.GUID, 1)
	c.add(t, apps["B1"], otherApp, 1)
	f.running(
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1"},
		fakecc.ProcessInstance{Index: 1, State: fakecc.StateRunning, Host: "127.0.0.1"},
	)
	api := startAPI(t, p, nil, f.cfMode)
	startAgentWith(t, api, c.agentConfig(p, api, "127.0.0.1"))

	resp := startCaptureAs(t, api, f.app.GUID, f.uaa.UserToken(f.developer), url.Values{"instance": {"1"}, "filter": {"udp"}, "packets": {"5"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, tag := range []string{"B1", "A0", "A1"} {
		apps[tag].send(t, tag, 5)
	}
	r := finish(t, resp)
	rows := tshark(t, r.file, "udp.payload")
	if len(rows) != 5 {
		t.Fatalf("%d packets", len(rows))
	}
	for i, row := range rows {
		if row[0] != hexOf(payload("A1", i)) {
			t.Fatalf("packet %d is %s: captured the wrong container", i, row[0])
		}
	}
}

// What the user sees when the cell cannot find the container.
func TestGardenErrorsReachTheUser(t *testing.T) {
	f := newFoundation(t)
	p := newPKI(t)
	c := newCell(t)
	a := newApp(t)
	c.add(t, a, f.app.GUID, 0)
	f.running(
		fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1"},
		fakecc.ProcessInstance{Index: 3, State: fakecc.StateRunning, Host: "127.0.0.1"},
		fakecc.ProcessInstance{Index: 4, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: "gone-handle-0000000000000000"},
	)
	api := startAPI(t, p, nil, f.cfMode)
	startAgentWith(t, api, c.agentConfig(p, api, "127.0.0.1"))
	token := f.uaa.UserToken(f.developer)
	for _, tc := range []struct {
		index  int
		status int
		detail string
	}{
		{3, 404, "instance 3"},
		{4, 404, "gone-handle"},
	} {
		r := finish(t, startCaptureAs(t, api, f.app.GUID, token, url.Values{"instance": {strconv.Itoa(tc.index)}}))
		if r.status != tc.status || !bytes.Contains(r.body, []byte(tc.detail)) {
			t.Errorf("instance %d: %d %s", tc.index, r.status, r.body)
		}
		t.Logf("instance %d: %s", tc.index, r.body)
	}
	c.garden.SetUnavailable("backend down")
	r := finish(t, startCaptureAs(t, api, f.app.GUID, token, url.Values{"instance": {"0"}}))
	if r.status != 502 || !bytes.Contains(r.body, []byte("garden")) {
		t.Errorf("garden down: %d %s", r.status, r.body)
	}
	t.Logf("garden down: %s", r.body)
}

// The container ends, but its interface lives on: garden's own
// networking keeps the veth while the capture's socket holds the
// namespace. The agent sees the end through the container's init
// process and ends the capture container_gone, with every packet
// captured before.
func TestGardenContainerEndSeenWhileItsInterfaceLives(t *testing.T) {
	f := newFoundation(t)
	p := newPKI(t)
	a := newApp(t)
	initProc := exec.Command("ip", "netns", "exec", a.pair.App.Name, "sleep", "600")
	if err := initProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = initProc.Process.Kill(); _ = initProc.Wait() })
	c := newCell(t)
	h := c.addWithInit(t, a, f.app.GUID, 0, initProc.Process.Pid)
	f.running(fakecc.ProcessInstance{Index: 0, State: fakecc.StateRunning, Host: "127.0.0.1", InstanceGUID: h})
	api := startAPI(t, p, nil, f.cfMode)
	startAgentProcessWith(t, api, c.agentConfig(p, api, "127.0.0.1"))

	resp := startCaptureAs(t, api, f.app.GUID, f.uaa.UserToken(f.developer), url.Values{"filter": {"udp"}, "duration": {"5m"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	a.send(t, "before-the-end", 5)
	got := readPackets(t, resp, 5)
	// Sent just before the end, so still in libpcap's ring: drained.
	a.send(t, "last", 3)
	if err := initProc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	finishContainerGone(t, resp, got, 8)
	// The interface was there all along.
	netnstest.IP(t, "-n", a.pair.App.Name, "link", "show", "eth0")
}
