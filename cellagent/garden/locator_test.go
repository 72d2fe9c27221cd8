package garden_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agent"
	"github.com/cloudfoundry/pcap-server-release/cellagent/garden"
	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cell is one Diego cell as the agent sees it: garden, garden-cni's
// directory of namespace bind mounts and two runc state roots.
type cell struct {
	garden    *fakegarden.Garden
	netnsDir  string
	runcRoots []string
	logs      *bytes.Buffer
	loc       *garden.Locator
}

func newCell(t *testing.T, g *fakegarden.Garden) *cell {
	t.Helper()
	if g == nil {
		g = fakegarden.New(t)
	}
	c := &cell{
		garden:    g,
		netnsDir:  t.TempDir(),
		runcRoots: []string{t.TempDir(), t.TempDir()},
		logs:      &bytes.Buffer{},
	}
	c.loc = c.locator(t, g.Network, g.Address, 2*time.Second)
	return c
}

func (c *cell) locator(t *testing.T, network, address string, callTimeout time.Duration) *garden.Locator {
	t.Helper()
	loc, err := garden.New(garden.Config{
		Network:           network,
		Address:           address,
		ContainerNetnsDir: c.netnsDir,
		RuncRoots:         c.runcRoots,
		CallTimeout:       callTimeout,
		Logger:            slog.New(slog.NewJSONHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loc.Close)
	return loc
}

// locate runs loc.Locate and has the test's end close the container's
// end watch, as a capture would.
func locate(t *testing.T, loc *garden.Locator, req *wire.CaptureRequest) (agent.Container, error) {
	t.Helper()
	c, err := loc.Locate(t.Context(), req)
	if c.End != nil {
		t.Cleanup(c.End.Close)
	}
	return c, err
}

func (c *cell) locate(t *testing.T, req *wire.CaptureRequest) (agent.Container, error) {
	t.Helper()
	return locate(t, c.loc, req)
}

// bindNetns does what garden-cni does: bind mount the namespace at
// ns onto netnsDir/handle.
func (c *cell) bindNetns(t *testing.T, handle, ns string) string {
	t.Helper()
	p := filepath.Join(c.netnsDir, handle)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", ns, p).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind %s %s: %v: %s", ns, p, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", p).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", p, err, out)
		}
	})
	return p
}

// writeState writes root/handle/state.json.
func writeState(t *testing.T, root, handle string, state map[string]any) string {
	t.Helper()
	data, err := json.Marshal(state)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, handle, "state.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func locateErr(t *testing.T, err error, code wire.ErrorCode, contains ...string) {
	t.Helper()
	var le *agent.LocateError
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T) is not a LocateError", err, err)
	}
	t.Logf("%s: %s", le.Code, le.Msg)
	if le.Code != code {
		t.Errorf("code %s, want %s (message %q)", le.Code, code, le.Msg)
	}
	for _, s := range contains {
		if !strings.Contains(le.Msg, s) {
			t.Errorf("message %q lacks %q", le.Msg, s)
		}
	}
}

// netnsID is the identity of the network namespace a path names.
func netnsID(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// startInNewNetns starts a process in a network namespace of its own, like
// a container's init process, and returns its PID and start time (field
// 22 of /proc/PID/stat). It is killed when the test ends.
func startInNewNetns(t *testing.T) (int, uint64) {
	t.Helper()
	netnstest.RequireRoot(t)
	cmd := exec.Command("unshare", "--net", "sh", "-c", "echo ready; exec sleep 600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("skipped: cannot run unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The shell prints only once unshare has moved it into the new
	// namespace, and exec keeps its PID.
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("unshare child: %q, %v", line, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, start
}

func TestLocateByHandle(t *testing.T) {
	c := newCell(t, nil)
	ns := netnstest.NewNamespace(t)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
	c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 1})
	bind := c.bindNetns(t, h, ns.Path())

	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 0, InstanceGUID: h})
	if err != nil {
		t.Fatal(err)
	}
	if got != (agent.Container{Handle: h, NetnsPath: bind, Interface: "eth0"}) {
		t.Errorf("Locate = %+v, want handle %s at %s", got, h, bind)
	}
	if netnsID(t, got.NetnsPath) != netnsID(t, ns.Path()) {
		t.Error("the path found is not the container's namespace")
	}
	if n := c.garden.Requests(fakegarden.GetProperties); n != 1 {
		t.Errorf("%d properties requests, want 1", n)
	}
	if n := c.garden.Requests(fakegarden.ListContainers); n != 0 {
		t.Errorf("a lookup by handle listed containers %d times", n)
	}
	// The log says what was found and where the namespace came from.
	var found map[string]any
	for line := range strings.Lines(c.logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "container located" {
			found = m
		}
	}
	if found == nil || found["handle"] != h || found["app_guid"] != "app-a" || found["index"] != 0.0 ||
		found["netns"] != bind || found["netns_source"] != garden.SourceBindMount {
		t.Errorf("log line: %v\nlogs:\n%s", found, c.logs)
	}
}

func TestLocateByHandleMissing(t *testing.T) {
	c := newCell(t, nil)
	c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 3, InstanceGUID: "8c8a8e78-2f13-4e4b-7c2c-8f2d"})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 3 on this cell (instance guid 8c8a8e78-2f13-4e4b-7c2c-8f2d)")
	if !garden.IsContainerNotFound(err) {
		t.Errorf("garden's answer is not kept: %v", errors.Unwrap(err))
	}
}

// An instance guid of another app must not lead into that app's
// container: the API authorized the user for the app it names.
func TestLocateByHandleOfAnotherApp(t *testing.T) {
	c := newCell(t, nil)
	theirs := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-b"})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: theirs})
	locateErr(t, err, wire.ErrContainerNotFound, theirs, "not an instance of app app-a")
}

func TestLocateByHandleRejectsPaths(t *testing.T) {
	c := newCell(t, nil)
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: "../../proc/1"})
	locateErr(t, err, wire.ErrBadRequest, "not a garden handle")
	if n := c.garden.TotalRequests(); n != 0 {
		t.Errorf("garden asked %d times about a path", n)
	}
}

// Three containers of two apps on one cell, plus a worker and a task of
// the first app: the index, the app and the process type choose.
func TestLocateByAppAndIndex(t *testing.T) {
	c := newCell(t, nil)
	add := func(app string, index int, ptype, workload string) (string, string) {
		h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: app, Index: index, ProcessType: ptype, Workload: workload})
		ns := netnstest.NewNamespace(t)
		c.bindNetns(t, h, ns.Path())
		return h, ns.Path()
	}
	a0, a0ns := add("app-a", 0, "web", "")
	a1, a1ns := add("app-a", 1, "web", "")
	b1, b1ns := add("app-b", 1, "web", "")
	w1, w1ns := add("app-a", 1, "worker", "")
	add("app-a", 1, "web", "task")

	cases := []struct {
		app, ptype   string
		index        int
		handle, netn string
	}{
		{"app-a", "web", 0, a0, a0ns},
		{"app-a", "web", 1, a1, a1ns},
		{"app-b", "web", 1, b1, b1ns},
		{"app-b", "", 1, b1, b1ns},
		{"app-a", "worker", 1, w1, w1ns},
		{"app-a", "", 0, a0, a0ns},
	}
	for _, tc := range cases {
		got, err := c.locate(t, &wire.CaptureRequest{AppGUID: tc.app, ProcessType: tc.ptype, Index: tc.index})
		if err != nil {
			t.Errorf("%s %s/%d: %v", tc.app, tc.ptype, tc.index, err)
			continue
		}
		if got.Handle != tc.handle || got.NetnsPath != filepath.Join(c.netnsDir, tc.handle) {
			t.Errorf("%s %s/%d = %+v, want handle %s", tc.app, tc.ptype, tc.index, got, tc.handle)
		}
		if netnsID(t, got.NetnsPath) != netnsID(t, tc.netn) {
			t.Errorf("%s %s/%d: wrong namespace", tc.app, tc.ptype, tc.index)
		}
	}

	// Without a process type, web 1 and worker 1 are the same instance.
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 1})
	locateErr(t, err, wire.ErrInternal, "2 containers", "app app-a instance 1", a1, w1)

	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", ProcessType: "clock", Index: 1})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 1 on this cell", "process type clock", "web/0, web/1, worker/1")
}

// The rep's container_owner_name labels the containers: the agent takes
// only those of the owner it is configured with.
func TestLocateByOwnerName(t *testing.T) {
	c := newCell(t, nil)
	mine := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0, Owner: "cell-executor"})
	theirs := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 1})
	c.bindNetns(t, mine, netnstest.NewNamespace(t).Path())
	loc, err := garden.New(garden.Config{Network: c.garden.Network, Address: c.garden.Address, ContainerNetnsDir: c.netnsDir, ContainerOwnerName: "cell-executor"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loc.Close)
	for _, req := range []*wire.CaptureRequest{{AppGUID: "app-a", Index: 0}, {AppGUID: "app-a", Index: 0, InstanceGUID: mine}} {
		if got, err := locate(t, loc, req); err != nil || got.Handle != mine {
			t.Errorf("%+v: %+v, %v", req, got, err)
		}
	}
	_, err = locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: theirs})
	locateErr(t, err, wire.ErrContainerNotFound, "not an instance of app app-a")
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 0})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 0 on this cell", "web/1")
}

func TestLocateAcceptsContainerWithoutProcessType(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 2, NoProcessTypeTag: true})
	c.bindNetns(t, h, netnstest.NewNamespace(t).Path())
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", ProcessType: "web", Index: 2})
	if err != nil || got.Handle != h {
		t.Errorf("Locate = %+v, %v; want %s", got, err, h)
	}
}

func TestLocateInstanceMissing(t *testing.T) {
	c := newCell(t, nil)
	c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
	c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 1})
	c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-b", Index: 2})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 2})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 2 on this cell", "web/0, web/1")

	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-c", Index: 0})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-c instance 0 on this cell")
	if n := c.garden.Requests(fakegarden.GetProperties); n != 2 {
		t.Errorf("%d properties requests, want 2 (app-a's containers only)", n)
	}
}

// A container destroyed between the list and the properties read is not
// a failure, and one without an index in log_config is skipped.
func TestLocateSkipsVanishedAndUnlabelled(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
	odd := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
	c.garden.SetProperty(odd, "log_config", `{"guid":"app-a","source_name":"CELL"}`)
	list, _ := json.Marshal(map[string][]string{"Handles": {h, odd, "vanished"}})
	c.garden.Inject(fakegarden.ListContainers, fakegarden.Fault{Status: 200, Body: string(list)})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 0})
	// The container is chosen; its namespace is not set up in this test.
	locateErr(t, err, wire.ErrNoNetns, "no network namespace found for container "+h)
	if n := c.garden.Requests(fakegarden.GetProperties); n != 3 {
		t.Errorf("%d properties requests, want 3", n)
	}
}

func TestLocateGardenDown(t *testing.T) {
	c := newCell(t, nil)
	sock := filepath.Join(t.TempDir(), "garden.sock")
	loc := c.locator(t, "unix", sock, 0)
	for _, req := range []*wire.CaptureRequest{{AppGUID: "app-a"}, {AppGUID: "app-a", InstanceGUID: "h"}} {
		_, err := locate(t, loc, req)
		locateErr(t, err, wire.ErrGardenUnavailable, "garden is unreachable on unix socket "+sock, "no such file or directory")
	}
	locateErr(t, loc.Ping(t.Context()), wire.ErrGardenUnavailable, sock)
}

func TestLocateGardenFailing(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})

	c.garden.SetUnavailable("containerd is not running")
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a"})
	locateErr(t, err, wire.ErrGardenUnavailable, c.garden.Address, "list the containers of app app-a", "500", "containerd is not running")

	c.garden.Clear()
	c.garden.Inject(fakegarden.GetProperties, fakegarden.Fault{Status: 500, Message: "runc state: i/o error"})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrGardenUnavailable, "read the properties of container "+h, "runc state: i/o error")

	c.garden.Inject(fakegarden.GetProperties, fakegarden.Fault{Delay: time.Hour})
	impatient := c.locator(t, c.garden.Network, c.garden.Address, 100*time.Millisecond)
	start := time.Now()
	_, err = locate(t, impatient, &wire.CaptureRequest{AppGUID: "app-a"})
	locateErr(t, err, wire.ErrGardenUnavailable, "did not answer in time")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a call timeout of 100ms took %v", d)
	}

	c.garden.Inject(fakegarden.ListContainers, fakegarden.Fault{Drop: true})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a"})
	locateErr(t, err, wire.ErrGardenUnavailable, c.garden.Address, "closed the connection instead of answering")

	// A garden without the route: a bare 404 is not "no such container".
	c.garden.Inject(fakegarden.GetProperties, fakegarden.Fault{Status: 404, Body: "404 page not found\n"})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrGardenUnavailable, "garden answered 404: 404 page not found")
}

func TestLocateOverTCP(t *testing.T) {
	c := newCell(t, fakegarden.NewTCP(t))
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 3})
	bind := c.bindNetns(t, h, netnstest.NewNamespace(t).Path())
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 3})
	if err != nil || got != (agent.Container{Handle: h, NetnsPath: bind, Interface: "eth0"}) {
		t.Errorf("Locate over TCP = %+v, %v", got, err)
	}
	if err := c.loc.Ping(t.Context()); err != nil {
		t.Errorf("ping over TCP: %v", err)
	}
}

// Without the bind mount, runc's state.json names the namespace; the
// first root lacks the container, the second has it.
func TestLocateFromRuncNamespacePath(t *testing.T) {
	c := newCell(t, nil)
	ns := netnstest.NewNamespace(t)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	writeState(t, c.runcRoots[1], h, map[string]any{
		"id": h, "init_process_pid": 0,
		"namespace_paths": map[string]string{"NEWNET": ns.Path(), "NEWUTS": "/proc/1/ns/uts"},
	})
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	if err != nil || got.NetnsPath != ns.Path() {
		t.Fatalf("Locate = %+v, %v; want %s", got, err, ns.Path())
	}
	if !strings.Contains(c.logs.String(), `"netns_source":"`+garden.SourceRuncNetns+`"`) {
		t.Errorf("source not logged:\n%s", c.logs)
	}
}

// A stale file where the bind mount was is passed over for runc's state.
func TestLocateSkipsStaleBindMountFile(t *testing.T) {
	c := newCell(t, nil)
	ns := netnstest.NewNamespace(t)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	if err := os.WriteFile(filepath.Join(c.netnsDir, h), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	writeState(t, c.runcRoots[0], h, map[string]any{"namespace_paths": map[string]string{"NEWNET": ns.Path()}})
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	if err != nil || got.NetnsPath != ns.Path() {
		t.Errorf("Locate = %+v, %v; want %s", got, err, ns.Path())
	}
}

// state.json of an older runc: only the init process's PID.
func TestLocateFromRuncInitPID(t *testing.T) {
	c := newCell(t, nil)
	pid, start := startInNewNetns(t)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	writeState(t, c.runcRoots[0], h, map[string]any{"init_process_pid": pid, "init_process_start": strconv.FormatUint(start, 10)})
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	want := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err != nil || got.NetnsPath != want {
		t.Fatalf("Locate = %+v, %v; want %s", got, err, want)
	}
	if netnsID(t, got.NetnsPath) == netnsID(t, "/proc/self/ns/net") {
		t.Error("found the host namespace")
	}

	// Without a start time the PID is taken as it is.
	writeState(t, c.runcRoots[0], h, map[string]any{"init_process_pid": pid})
	if got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h}); err != nil || got.NetnsPath != want {
		t.Errorf("without start time: %+v, %v", got, err)
	}
}

// When the init process is gone and its PID reused, /proc/PID leads to a
// stranger: the start time in state.json shows it.
func TestLocateRefusesReusedPID(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	state := writeState(t, c.runcRoots[0], h, map[string]any{
		"init_process_pid": os.Getpid(), "init_process_start": 1,
		"namespace_paths": map[string]string{"NEWNET": fmt.Sprintf("/proc/%d/ns/net", os.Getpid())},
	})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, state, fmt.Sprintf("init process %d has exited and its PID belongs to another process", os.Getpid()))
}

func TestLocateNoNetnsAnywhere(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	broken := writeState(t, c.runcRoots[1], h, map[string]any{"init_process_pid": -3})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns,
		"no network namespace found for container "+h,
		filepath.Join(c.netnsDir, h)+" (absent)",
		filepath.Join(c.runcRoots[0], h, "state.json")+" (absent)",
		broken+" (unusable: init_process_pid -3 is not a PID)")
	var ne *garden.NoNetnsError
	if !errors.As(err, &ne) || len(ne.Tried) != 3 {
		t.Errorf("tried: %+v", ne)
	}

	// The init process has exited, and no PID was reused.
	writeState(t, c.runcRoots[1], h, map[string]any{"init_process_pid": garden.MaxPIDForTest})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, fmt.Sprintf("/proc/%d/ns/net named by %s (absent)", garden.MaxPIDForTest, broken))

	// A namespace, but not a network one.
	writeState(t, c.runcRoots[1], h, map[string]any{"namespace_paths": map[string]string{"NEWNET": "/proc/self/ns/uts"}})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, "/proc/self/ns/uts named by "+broken+" (not a network namespace")

	// A device is not even opened.
	writeState(t, c.runcRoots[1], h, map[string]any{"namespace_paths": map[string]string{"NEWNET": "/dev/null"}})
	_, err = c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, "/dev/null named by "+broken+" (not a network namespace)")
}

func TestLocateRefusesHostNamespace(t *testing.T) {
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	writeState(t, c.runcRoots[0], h, map[string]any{"init_process_pid": os.Getpid()})
	hostPath := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, "refusing to capture container "+h, hostPath, garden.SourceRuncInit, "host namespace")
	var he *garden.HostNetnsError
	if !errors.As(err, &he) || he.Path != hostPath {
		t.Errorf("error chain: %v", err)
	}
}

func TestLocateRefusesHostNamespaceBindMount(t *testing.T) {
	netnstest.RequireRoot(t)
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	bind := c.bindNetns(t, h, "/proc/self/ns/net")
	// A good state.json must not rescue it: the first source decides.
	writeState(t, c.runcRoots[0], h, map[string]any{"namespace_paths": map[string]string{"NEWNET": netnstest.NewNamespace(t).Path()}})
	_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	locateErr(t, err, wire.ErrNoNetns, "refusing", bind, garden.SourceBindMount, "host namespace")
}

// The container's end is watched through its init process, named by
// runc's state, also when its namespace comes from a bind mount: garden's
// own networking keeps the interface alive while a capture holds the
// namespace, so only the init process tells.
func TestLocateWatchesTheContainersEnd(t *testing.T) {
	c := newCell(t, nil)
	pid, start := startInNewNetns(t)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a"})
	c.bindNetns(t, h, fmt.Sprintf("/proc/%d/ns/net", pid))
	writeState(t, c.runcRoots[1], h, map[string]any{"init_process_pid": pid, "init_process_start": start})
	got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
	if err != nil || got.End == nil {
		t.Fatalf("Locate = %+v, %v; want a watch of process %d", got, err, pid)
	}
	select {
	case <-got.End.Ended():
		t.Fatal("ended while the init process runs")
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got.End.Ended():
	case <-time.After(30 * time.Second):
		t.Fatal("the init process was killed, but the container did not end within 30s")
	}
	if why, want := got.End.Why(), fmt.Sprintf("container %s has ended: its init process %d exited", h, pid); why != want {
		t.Errorf("Why = %q, want %q", why, want)
	}
}

// A container whose init process is gone (destroyed since garden listed
// it) is not on the cell any more.
func TestLocateContainerEndedMeanwhile(t *testing.T) {
	netnstest.RequireRoot(t)
	c := newCell(t, nil)
	h := c.garden.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 2})
	c.bindNetns(t, h, netnstest.NewNamespace(t).Path())
	reaped := exec.Command("true")
	if err := reaped.Run(); err != nil {
		t.Fatal(err)
	}
	for name, state := range map[string]map[string]any{
		"exited":       {"init_process_pid": reaped.Process.Pid},
		"PID reused":   {"init_process_pid": os.Getpid(), "init_process_start": 1},
		"reused, text": {"init_process_pid": os.Getpid(), "init_process_start": "1"},
	} {
		writeState(t, c.runcRoots[0], h, state)
		_, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 2, InstanceGUID: h})
		t.Log(name)
		locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 2 on this cell: container "+h+" has ended (its init process has exited)")
	}
	// Without runc state nothing is watched, and the capture goes ahead.
	if err := os.RemoveAll(filepath.Join(c.runcRoots[0], h)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", Index: 2, InstanceGUID: h}); err != nil || got.End != nil {
		t.Errorf("without runc state: %+v, %v", got, err)
	}
}

// Garden's networkers name the container's interface: silk and network
// plugins in garden.network.interface, garden's own networking in
// kawasaki.container-interface (where there is no eth0).
func TestLocateNamesTheContainersInterface(t *testing.T) {
	c := newCell(t, nil)
	ns := netnstest.NewNamespace(t)
	for _, tc := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{"garden.network.interface": "eth0"}, "eth0"},
		{map[string]string{"kawasaki.container-interface": "wzrmuv7qetsm5-1", "kawasaki.host-interface": "wzrmuv7qetsm5-0"}, "wzrmuv7qetsm5-1"},
		{map[string]string{"garden.network.interface": "a/b", "kawasaki.container-interface": "w1-1"}, "w1-1"},
		{map[string]string{"garden.network.interface": "much-too-long-name"}, ""},
		{map[string]string{"garden.network.interface": "eth0:1"}, ""},
		{map[string]string{"garden.network.interface": ".."}, ""},
		{nil, ""},
	} {
		h := fakegarden.InstanceGUID()
		props := fakegarden.DiegoProperties(fakegarden.AppContainer{AppGUID: "app-a", Handle: h, Owner: "executor"})
		delete(props, "garden.network.interface")
		maps.Copy(props, tc.props)
		c.garden.AddContainer(h, props)
		c.bindNetns(t, h, ns.Path())
		got, err := c.locate(t, &wire.CaptureRequest{AppGUID: "app-a", InstanceGUID: h})
		if err != nil || got.Interface != tc.want {
			t.Errorf("%v: interface %q, %v; want %q", tc.props, got.Interface, err, tc.want)
		}
	}
}
