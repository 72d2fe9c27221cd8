package realcf

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
)

// GardenTag is the tag of every gdn the tests run (gdn --tag): it names
// the iptables chains (w-q-*), links (wq*), cgroups (garden-q) and the
// cgroup mounts (/tmp/cgroups-q) that gdn leaves behind, so that clean-up
// removes exactly those. One character, as gdn's bridge names allow; the
// lab scripts use z. Tests of every package take turns on it (a lock
// file), so one gdn of the tests runs on the machine at a time.
const GardenTag = "q"

// GardenNetworking is how containers get their network.
type GardenNetworking int

const (
	// GdnNetworking is garden's own networking (kawasaki): a bridge and a
	// veth pair per container, the container's end named w<TAG>…-1 (no
	// eth0), its namespace known only through runc's state.
	GdnNetworking GardenNetworking = iota
	// PluginNetworking is examples/netplugin.sh as gdn's network plugin,
	// standing in for cf-networking's external networker and silk: the
	// container's interface is eth0, its namespace is bind-mounted at
	// NetnsDir/HANDLE, and destroy deletes eth0 first, as on a Diego cell.
	PluginNetworking
)

func (n GardenNetworking) String() string {
	if n == PluginNetworking {
		return "netplugin"
	}
	return "gdn"
}

// Addresses of the containers, from the benchmarking range: gdn's pool,
// and the plugin's first two octets (container N is PREFIX.N.2/30, its
// host side PREFIX.N.1).
const (
	gdnNetworkPool   = "198.18.252.0/22"
	pluginNetPrefix  = "198.19"
	pluginFirstIndex = 100 // the plugin's links are gdnp101h and on
	runcRoot         = "/run/runc"
	gardenStepLimit  = 30 * time.Second // one gdn, gardenctl or clean-up step
)

// Garden is a real gdn server with runc, for one test. Containers are
// created as Diego's executor creates them. When the test ends the
// containers are destroyed, gdn is stopped, and everything it left on
// the host is removed: containers gdn did not destroy, iptables chains,
// links, cgroups and their mounts, bind mounts, the work directory; and
// net.ipv4.ip_forward, which gdn sets to 1, gets its old value back.
type Garden struct {
	// Socket is garden's unix socket: the agent's garden.address.
	Socket string
	// NetnsDir holds the plugin's bind mount of each container's
	// namespace (the agent's container_netns_dir); empty with GdnNetworking.
	NetnsDir string
	// RuncRoot is where runc keeps HANDLE/state.json (the agent's
	// runc_roots).
	RuncRoot string
	// Networking is the mode gdn runs in.
	Networking GardenNetworking

	b       *Binaries
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when gdn has exited
	http    *http.Client
	mu      sync.Mutex
	handles []string // created and not destroyed
}

// RequireGarden skips tb, saying what is missing, unless real garden can
// run here: root, iptables, a static busybox for the rootfs, and the
// binaries.
func RequireGarden(tb testing.TB) *Binaries {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipped: the real-parts tier (garden) needs root: gdn creates cgroups, namespaces and iptables chains (make test runs as root in CI)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		tb.Skip("skipped: the real-parts tier (garden) needs iptables, which gdn runs: apt-get install -y iptables (make test installs it)")
	}
	if err := checkStaticBusybox(); err != nil {
		tb.Skipf("skipped: the real-parts tier (garden) builds each container's rootfs from a static busybox: %v; apt-get install -y busybox-static (make test installs it)", err)
	}
	return Require(tb, "garden")
}

// busybox is the static busybox of Debian's busybox-static.
const busybox = "/bin/busybox"

func checkStaticBusybox() error {
	f, err := elf.Open(busybox)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", busybox)
		}
	}
	return nil
}

// StartGarden starts gdn in mode n and waits until it answers. It is
// stopped, and the host cleaned, when tb ends.
func StartGarden(tb testing.TB, n GardenNetworking) *Garden {
	tb.Helper()
	b := RequireGarden(tb)
	lockGardenTag(tb)
	if left := gardenLeftovers(); len(left) > 0 {
		// The lock is free, so no test's gdn runs: an earlier test
		// binary was killed before its clean-up.
		tb.Logf("removing what an earlier gdn --tag %s left: %s", GardenTag, strings.Join(left, "; "))
		cleanKilledRuns(tb)
	}
	forward := ipForwardBefore(tb)
	// Under /tmp, not t.TempDir: the socket path must stay short, and the
	// container's root (uid 4294967294) must traverse to its rootfs.
	dir, err := os.MkdirTemp("/tmp", "gdn-"+GardenTag+"-")
	if err != nil {
		tb.Fatalf("garden: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatalf("garden: %v", err)
	}
	g := &Garden{
		Socket:     filepath.Join(dir, "gdn.sock"),
		RuncRoot:   runcRoot,
		Networking: n,
		b:          b,
		dir:        dir,
		exited:     make(chan struct{}),
	}
	g.http = &http.Client{Timeout: gardenStepLimit, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", g.Socket)
		},
	}}
	tb.Cleanup(func() { g.cleanup(tb, forward) })

	if out, err := g.command(context.Background(), b.Garden("gdn"), "setup", "--tag", GardenTag).CombinedOutput(); err != nil {
		tb.Fatalf("gdn setup --tag %s: %v\n%s", GardenTag, err, out)
	}
	args := []string{"server", "--tag", GardenTag, "--skip-setup",
		"--bind-socket", g.Socket,
		"--depot", filepath.Join(dir, "depot"),
		"--properties-path", filepath.Join(dir, "props.json"),
		"--runtime-plugin", b.Garden("runc"), "--init-bin", b.Garden("init"),
		"--dadoo-bin", b.Garden("dadoo"), "--nstar-bin", b.Garden("nstar"),
		"--tar-bin", "/bin/tar",
		"--default-rootfs", "raw://" + filepath.Join(dir, "unused-rootfs"),
		"--no-image-plugin",
		"--network-pool", gdnNetworkPool,
		"--uid-map-start", "1", "--uid-map-length", "65536",
		"--gid-map-start", "1", "--gid-map-length", "65536",
	}
	// gdn wants both to exist; every container gets a rootfs of its own.
	for _, d := range []string{"depot", "unused-rootfs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatalf("garden: %v", err)
		}
	}
	if n == PluginNetworking {
		g.NetnsDir = filepath.Join(dir, "netns")
		state := filepath.Join(dir, "netstate")
		for _, d := range []string{g.NetnsDir, state} {
			if err := os.Mkdir(d, 0o755); err != nil {
				tb.Fatalf("garden: %v", err)
			}
		}
		// The plugin numbers its containers from this file: links and
		// subnets of its own, apart from the lab scripts' (1 and on).
		if err := os.WriteFile(filepath.Join(state, "next"), []byte(strconv.Itoa(pluginFirstIndex)+"\n"), 0o644); err != nil {
			tb.Fatalf("garden: %v", err)
		}
		args = append(args, "--network-plugin", b.Example("netplugin.sh"),
			"--network-plugin-extra-arg", g.NetnsDir,
			"--network-plugin-extra-arg", state,
			"--network-plugin-extra-arg", pluginNetPrefix)
	}
	logFile, err := os.Create(filepath.Join(dir, "gdn.log"))
	if err != nil {
		tb.Fatalf("garden: %v", err)
	}
	defer logFile.Close()
	g.cmd = g.command(context.Background(), b.Garden("gdn"), args...)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// A test binary killed (go test's -timeout, a ^C) runs no clean-up:
	// gdn goes with it, and the next StartGarden removes the rest.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		tb.Fatalf("start gdn: %v", err)
	}
	go func() {
		_ = g.cmd.Wait()
		close(g.exited)
	}()
	g.awaitPing(tb)
	return g
}

// command runs a garden binary with a PATH of the system's directories
// only: gdn runs iptables, and the plugin python3, from PATH, and a
// version manager's shim there costs the plugin 0.4 s a container.
func (g *Garden) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin")
	cmd.WaitDelay = time.Second
	return cmd
}

// awaitPing waits until gdn answers GET /ping, or fails the test with
// gdn's log when it exits or does not answer in time.
func (g *Garden) awaitPing(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(gardenStepLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		status, _, err := g.Get("/ping")
		if err == nil && status == http.StatusOK {
			return
		}
		select {
		case <-g.exited:
			tb.Fatalf("gdn exited before it answered /ping (%v):\n%s", g.cmd.ProcessState, g.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("gdn did not answer /ping within %v (last: %d %v):\n%s", gardenStepLimit, status, err, g.logTail())
		}
	}
}

// Get does a GET on garden's API and returns the status and body.
func (g *Garden) Get(path string) (int, []byte, error) {
	resp, err := g.http.Get("http://api" + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// logTail is the end of gdn's log, for failures.
func (g *Garden) logTail() string {
	data, _ := os.ReadFile(filepath.Join(g.dir, "gdn.log"))
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// AppContainer is what Diego's executor knows of an app instance when it
// creates its container, as the fake garden takes it. gardenctl tags
// every container process type web and app name gdn-app, and gives it
// no org.
type AppContainer = fakegarden.AppContainer

// Container is a container garden created.
type Container struct {
	Handle string
	// IP is garden.network.container-ip.
	IP         netip.Addr
	Properties map[string]string
}

// Create creates a container as Diego's executor does (gardenctl), on a
// busybox rootfs of its own (garden writes to a raw rootfs in place).
func (g *Garden) Create(tb testing.TB, c AppContainer) *Container {
	tb.Helper()
	c = c.WithDefaults()
	if c.ProcessType != "web" || c.NoProcessTypeTag || c.AppName != "" || c.OrgGUID != "" {
		tb.Fatalf("gardenctl sets process type web, app name gdn-app and no org; %+v asks for others", c)
	}
	space := c.SpaceGUID
	if space == "" {
		space = "space-guid"
	}
	rootfs := filepath.Join(g.dir, "rootfs-"+c.Handle)
	if err := buildRootfs(rootfs); err != nil {
		tb.Fatalf("rootfs for %s: %v", c.Handle, err)
	}
	g.mu.Lock()
	g.handles = append(g.handles, c.Handle)
	g.mu.Unlock()
	g.gardenctl(tb, "create", "-handle", c.Handle, "-rootfs", "raw://"+rootfs,
		"-app", c.AppGUID, "-index", strconv.Itoa(c.Index), "-owner", c.Owner, "-workload", c.Workload, "-space", space)
	ctr := &Container{Handle: c.Handle}
	status, body, err := g.Get("/containers/" + c.Handle + "/properties")
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &ctr.Properties) != nil || ctr.Properties == nil {
		tb.Fatalf("properties of %s: %d %v %s", c.Handle, status, err, body)
	}
	if ctr.IP, err = netip.ParseAddr(ctr.Properties["garden.network.container-ip"]); err != nil {
		tb.Fatalf("container %s has no address: %v (properties %v)", c.Handle, err, ctr.Properties)
	}
	return ctr
}

// Run starts script (sh -c) in the container as user and returns at
// once; the process goes on.
func (g *Garden) Run(tb testing.TB, handle, user, script string) {
	tb.Helper()
	g.gardenctl(tb, "run", "-handle", handle, "-user", user, "--", "/bin/sh", "-c", script)
}

// ServeHTTP starts busybox httpd on port 8080 in the container, as the
// app's user vcap, serving body at /, and waits until the host reaches
// it. It returns the URL.
func (g *Garden) ServeHTTP(tb testing.TB, c *Container, body string) string {
	tb.Helper()
	if strings.ContainsAny(body, "'\n") {
		tb.Fatalf("ServeHTTP: body %q must be one line without quotes", body)
	}
	g.Run(tb, c.Handle, "vcap", "mkdir -p /tmp/www && echo '"+body+"' >/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www")
	url := "http://" + netip.AddrPortFrom(c.IP, 8080).String() + "/"
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	deadline := time.Now().Add(gardenStepLimit)
	for {
		got, err := getBody(client, url)
		if err == nil && got == body+"\n" {
			return url
		}
		if time.Now().After(deadline) {
			tb.Fatalf("httpd in %s did not answer at %s within %v: %q %v", c.Handle, url, gardenStepLimit, got, err)
		}
		// httpd gives no sign of readiness but answering: retry soon.
		time.Sleep(20 * time.Millisecond)
	}
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

// Destroy destroys the container through garden, as the rep does when an
// instance stops.
func (g *Garden) Destroy(tb testing.TB, handle string) {
	tb.Helper()
	g.gardenctl(tb, "destroy", "-handle", handle)
	g.mu.Lock()
	g.handles = slices.DeleteFunc(g.handles, func(h string) bool { return h == handle })
	g.mu.Unlock()
}

func (g *Garden) gardenctl(tb testing.TB, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gardenStepLimit)
	defer cancel()
	args = append([]string{"-sock", g.Socket}, args...)
	if out, err := g.command(ctx, g.b.Gardenctl(), args...).CombinedOutput(); err != nil {
		tb.Fatalf("gardenctl %s: %v\n%s\ngdn log:\n%s", strings.Join(args, " "), err, out, g.logTail())
	}
}

// InitPID is the PID of the container's init process, from runc's state.
func (g *Garden) InitPID(tb testing.TB, handle string) int {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(g.RuncRoot, handle, "state.json"))
	if err != nil {
		tb.Fatalf("runc state of %s: %v", handle, err)
	}
	var st struct {
		InitPID int `json:"init_process_pid"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.InitPID <= 0 {
		tb.Fatalf("runc state of %s: init_process_pid %d %v", handle, st.InitPID, err)
	}
	return st.InitPID
}

// Netns is the path of the container's network namespace: the plugin's
// bind mount, or its init process's namespace with gdn's networking.
func (g *Garden) Netns(tb testing.TB, handle string) string {
	tb.Helper()
	if g.NetnsDir != "" {
		return filepath.Join(g.NetnsDir, handle)
	}
	return fmt.Sprintf("/proc/%d/ns/net", g.InitPID(tb, handle))
}

// cleanup destroys what the test left, stops gdn and removes everything
// it left on the host, then checks that nothing is left.
func (g *Garden) cleanup(tb testing.TB, forward string) {
	defer g.http.CloseIdleConnections()
	g.mu.Lock()
	handles := slices.Clone(g.handles)
	g.mu.Unlock()
	running := g.cmd != nil && g.cmd.Process != nil
	if running {
		for _, h := range handles {
			ctx, cancel := context.WithTimeout(context.Background(), gardenStepLimit)
			out, err := g.command(ctx, g.b.Gardenctl(), "-sock", g.Socket, "destroy", "-handle", h).CombinedOutput()
			cancel()
			if err != nil {
				tb.Logf("clean-up: gardenctl destroy %s: %v: %s", h, err, out)
			}
		}
		// gdn leaves its containers running on SIGTERM; they are gone now.
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(gardenStepLimit):
			tb.Errorf("clean-up: gdn did not stop within %v of SIGTERM; killing it", gardenStepLimit)
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
	}
	if tb.Failed() {
		tb.Logf("gdn log (%s mode), last lines:\n%s", g.Networking, g.logTail())
	}
	// Containers gdn did not destroy: only ours, as runc's root is shared.
	for _, h := range handles {
		if _, err := os.Stat(filepath.Join(g.RuncRoot, h)); err == nil {
			if out, err := exec.Command(g.b.Garden("runc"), "--root", g.RuncRoot, "delete", "-f", h).CombinedOutput(); err != nil {
				tb.Errorf("clean-up: runc delete -f %s: %v: %s", h, err, out)
			}
		}
	}
	unmountUnder(tb, g.dir)
	cleanGardenTag(tb, pluginLinks(g.dir))
	if err := os.WriteFile(ipForward, []byte(forward+"\n"), 0o644); err != nil {
		tb.Errorf("clean-up: restore ip_forward=%s: %v", forward, err)
	} else {
		_ = os.Remove(ipForwardRecord)
	}
	if err := os.RemoveAll(g.dir); err != nil {
		tb.Errorf("clean-up: %v", err)
	}
	if left := gardenLeftovers(); len(left) > 0 {
		tb.Errorf("clean-up: gdn --tag %s left: %s", GardenTag, strings.Join(left, "; "))
	}
	if links := existingLinks(pluginLinks(g.dir)); len(links) > 0 {
		tb.Errorf("clean-up: the network plugin left links %v", links)
	}
}

// pluginLinks are the host-side links the network plugin of the gdn
// with work directory dir may have created, by the number it gave each
// container.
func pluginLinks(dir string) []string {
	data, err := os.ReadFile(filepath.Join(dir, "netstate", "next"))
	if err != nil {
		return nil
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil
	}
	var links []string
	for n := pluginFirstIndex + 1; n <= last; n++ {
		links = append(links, "gdnp"+strconv.Itoa(n)+"h")
	}
	return links
}

const (
	ipForward = "/proc/sys/net/ipv4/ip_forward"
	// ipForwardRecord keeps ip_forward's value from before the tests'
	// gdn while one runs, for the clean-up after a killed test binary.
	ipForwardRecord = "/tmp/realcf-garden-" + GardenTag + ".ip_forward"
)

// ipForwardBefore is ip_forward's value before gdn set it: the one a
// killed test binary recorded (restored now), else the current one,
// recorded.
func ipForwardBefore(tb testing.TB) string {
	tb.Helper()
	if rec, err := os.ReadFile(ipForwardRecord); err == nil {
		v := strings.TrimSpace(string(rec))
		if v == "0" || v == "1" {
			if err := os.WriteFile(ipForward, []byte(v+"\n"), 0o644); err != nil {
				tb.Fatalf("garden: restore ip_forward=%s: %v", v, err)
			}
		}
	}
	cur, err := os.ReadFile(ipForward)
	if err != nil {
		tb.Fatalf("garden: %v", err)
	}
	v := strings.TrimSpace(string(cur))
	if err := os.WriteFile(ipForwardRecord, []byte(v+"\n"), 0o644); err != nil {
		tb.Fatalf("garden: %v", err)
	}
	return v
}

// lockGardenTag waits for the tag's lock, held until tb ends: tests in
// other packages' binaries may want gdn at the same time.
func lockGardenTag(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile("/tmp/realcf-garden-"+GardenTag+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatalf("garden lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		tb.Logf("waiting for another test's gdn --tag %s to end", GardenTag)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		tb.Fatalf("garden lock: %v", err)
	}
	tb.Cleanup(func() { f.Close() }) // closing releases the lock
}

// workDirPattern matches the work directories of the tests' gdns.
var workDirPattern = "/tmp/gdn-" + GardenTag + "-*"

// gardenLeftovers lists what a gdn of the tag has left on the host.
func gardenLeftovers() []string {
	var left []string
	if dirs, _ := filepath.Glob(workDirPattern); len(dirs) > 0 {
		left = append(left, fmt.Sprintf("work directories %v", dirs))
		for _, dir := range dirs {
			if links := existingLinks(pluginLinks(dir)); len(links) > 0 {
				left = append(left, fmt.Sprintf("network plugin links %v", links))
			}
			if mounts := mountsUnder(dir); len(mounts) > 0 {
				left = append(left, fmt.Sprintf("mounts %v", mounts))
			}
		}
	}
	if ids := killedRunContainers(); len(ids) > 0 {
		left = append(left, fmt.Sprintf("containers %v", ids))
	}
	for _, table := range []string{"filter", "nat"} {
		if chains := tagChains(table); len(chains) > 0 {
			left = append(left, fmt.Sprintf("iptables -t %s chains %v", table, chains))
		}
	}
	if links := tagLinks(); len(links) > 0 {
		left = append(left, fmt.Sprintf("links %v", links))
	}
	if dirs := tagCgroups(); len(dirs) > 0 {
		left = append(left, fmt.Sprintf("%d cgroups garden-%s and below", len(dirs), GardenTag))
	}
	if mounts := mountsUnder(cgroupMountDir); len(mounts) > 0 || fileExists(cgroupMountDir) {
		left = append(left, fmt.Sprintf("%s with %d mounts", cgroupMountDir, len(mounts)))
	}
	return left
}

var cgroupMountDir = "/tmp/cgroups-" + GardenTag

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// killedRunContainers are the runc containers whose rootfs is in a work
// directory of the tests' gdns: only those are the tests'.
func killedRunContainers() []string {
	states, _ := filepath.Glob(filepath.Join(runcRoot, "*", "state.json"))
	prefix := strings.TrimSuffix(workDirPattern, "*")
	var ids []string
	for _, p := range states {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var st struct {
			ID     string `json:"id"`
			Config struct {
				Rootfs string `json:"rootfs"`
			} `json:"config"`
		}
		if json.Unmarshal(data, &st) == nil && st.ID != "" && strings.HasPrefix(st.Config.Rootfs, prefix) {
			ids = append(ids, st.ID)
		}
	}
	return ids
}

// cleanKilledRuns removes what the gdns of killed test binaries left:
// their containers (gdn died with the binary; the containers did not),
// their work directories and mounts, and what cleanGardenTag removes.
func cleanKilledRuns(tb testing.TB) {
	runc := Require(tb, "garden").Garden("runc")
	for _, id := range killedRunContainers() {
		if out, err := exec.Command(runc, "--root", runcRoot, "delete", "-f", id).CombinedOutput(); err != nil {
			tb.Errorf("clean-up: runc delete -f %s: %v: %s", id, err, out)
		}
	}
	dirs, _ := filepath.Glob(workDirPattern)
	var links []string
	for _, dir := range dirs {
		links = append(links, pluginLinks(dir)...)
		unmountUnder(tb, dir)
	}
	cleanGardenTag(tb, links)
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("clean-up: %v", err)
		}
	}
}

// cleanGardenTag removes what gdn setup and gdn server of the tag leave
// once gdn has stopped and its containers are gone, and the plugin's
// links given: iptables chains and the jumps to them, links, cgroups,
// and the cgroup mounts of gdn setup.
func cleanGardenTag(tb testing.TB, pluginLinks []string) {
	for _, table := range []string{"filter", "nat"} {
		for _, builtin := range []string{"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"} {
			rules := iptablesRules(table, builtin)
			// Delete by number from the last, so numbers stay valid.
			for i := len(rules) - 1; i >= 0; i-- {
				if target := ruleTarget(rules[i]); strings.HasPrefix(target, "w-"+GardenTag+"-") {
					iptables(tb, table, "-D", builtin, strconv.Itoa(i+1))
				}
			}
		}
		chains := tagChains(table)
		for _, c := range chains {
			iptables(tb, table, "-F", c)
		}
		for _, c := range chains {
			iptables(tb, table, "-X", c)
		}
	}
	for _, l := range append(tagLinks(), existingLinks(pluginLinks)...) {
		if out, err := exec.Command("ip", "link", "del", l).CombinedOutput(); err != nil && fileExists("/sys/class/net/"+l) {
			tb.Errorf("clean-up: ip link del %s: %v: %s", l, err, out)
		}
	}
	dirs := tagCgroups()
	// Children before parents.
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			tb.Errorf("clean-up: rmdir %s: %v", d, err)
		}
	}
	unmountUnder(tb, cgroupMountDir)
	if fileExists(cgroupMountDir) {
		if err := syscall.Unmount(cgroupMountDir, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			tb.Errorf("clean-up: umount %s: %v", cgroupMountDir, err)
		}
		if err := os.Remove(cgroupMountDir); err != nil {
			tb.Errorf("clean-up: %v", err)
		}
	}
}

func iptables(tb testing.TB, table string, args ...string) {
	args = append([]string{"-w", "-t", table}, args...)
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		tb.Errorf("clean-up: iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// iptablesRules are the -A lines of one chain, in rule-number order.
func iptablesRules(table, chain string) []string {
	out, err := exec.Command("iptables", "-w", "-t", table, "-S", chain).Output()
	if err != nil {
		return nil // nat has no INPUT on old kernels, filter no PREROUTING
	}
	var rules []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "-A ") {
			rules = append(rules, strings.TrimSpace(line))
		}
	}
	return rules
}

// ruleTarget is the chain a rule jumps or goes to.
func ruleTarget(rule string) string {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// tagChains are the tag's chains of an iptables table.
func tagChains(table string) []string {
	out, err := exec.Command("iptables", "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil
	}
	var chains []string
	for line := range strings.Lines(string(out)) {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "-N "); ok && strings.HasPrefix(c, "w-"+GardenTag+"-") {
			chains = append(chains, c)
		}
	}
	return chains
}

// tagLinks are gdn's bridge and veths of the tag on the host.
func tagLinks() []string {
	ifaces, _ := net.Interfaces()
	var links []string
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, "w"+GardenTag) {
			links = append(links, i.Name)
		}
	}
	return links
}

func existingLinks(names []string) []string {
	var links []string
	for _, n := range names {
		if fileExists("/sys/class/net/" + n) {
			links = append(links, n)
		}
	}
	return links
}

// tagCgroups are the garden-TAG cgroups, with the containers' below them:
// at each hierarchy's root, under gdn's own memory cgroup, and in the
// hierarchies only gdn setup mounts.
func tagCgroups() []string {
	var dirs []string
	for _, root := range []string{"/sys/fs/cgroup", cgroupMountDir} {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if d.Name() == "garden-"+GardenTag {
				_ = filepath.WalkDir(p, func(q string, e os.DirEntry, err error) error {
					if err == nil && e.IsDir() {
						dirs = append(dirs, q)
					}
					return nil
				})
				return filepath.SkipDir
			}
			return nil
		})
	}
	return dirs
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(unescapeMount(f[4]), dir+"/") {
			mounts = append(mounts, unescapeMount(f[4]))
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(mounts)
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(tb testing.TB, dir string) {
	for _, m := range mountsUnder(dir) {
		if err := syscall.Unmount(m, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			tb.Errorf("clean-up: umount %s: %v", m, err)
		}
	}
}

// The container's root and vcap, as host uids with gdn's uid map
// (--uid-map-start 1 --uid-map-length 65536: the container's root is the
// host's nobody of 32-bit ids).
const (
	containerRoot = 4294967294
	containerVcap = 2000
)

// buildRootfs makes a busybox root filesystem at dir, owned by the
// container's root, with the users root and vcap (2000).
func buildRootfs(dir string) error {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "home/vcap"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	bb := filepath.Join(dir, "bin", "busybox")
	if err := copyFile(busybox, bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000::/home/vcap:/bin/sh\n",
		"etc/group":  "root:x:0:\nvcap:x:2000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		owner := containerRoot
		if p == filepath.Join(dir, "home", "vcap") {
			owner = containerVcap
		}
		return os.Lchown(p, owner, owner)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
