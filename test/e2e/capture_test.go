package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
)

func oneInstance(cellIP string) []apiconfig.DevTarget {
	return []apiconfig.DevTarget{{AppGUID: appGUID, AppName: appName, Index: 0, CellIP: cellIP}}
}

// setup runs an API and an in-process agent for one app instance.
func setup(t *testing.T) (*apiProc, *app) {
	t.Helper()
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	return api, a
}

func TestCaptureDeliversEveryPacketInOrderAndStopsAtCount(t *testing.T) {
	api, a := setup(t)
	const n = 300
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "packets": {fmt.Sprint(n)}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Twice as many as asked for: the capture must stop at exactly n.
	a.send(t, "order", 2*n)
	r := finish(t, resp)

	rows := tshark(t, r.file, "udp.payload", "frame.time_epoch")
	if len(rows) != n {
		t.Fatalf("tshark reads %d packets, want %d", len(rows), n)
	}
	for i, row := range rows {
		if want := hexOf(payload("order", i)); row[0] != want {
			t.Fatalf("packet %d carries %s, want %s", i, row[0], want)
		}
	}
	if got := r.trailer.Get("Pcap-End-Reason"); got != "packets" {
		t.Fatalf("end reason %q, want packets", got)
	}
	if got := r.trailer.Get("Pcap-Packets"); got != fmt.Sprint(n) {
		t.Fatalf("Pcap-Packets %q", got)
	}
	if got := r.trailer.Get("Pcap-Bytes"); got != fmt.Sprint(len(r.body)) {
		t.Fatalf("Pcap-Bytes %q, body %d bytes", got, len(r.body))
	}
	if got := r.trailer.Get("Pcap-Dropped-Detail"); got != "kernel=0 agent=0 api=0" {
		t.Fatalf("drops %q", got)
	}
	// The file uses nanosecond timestamps (magic a1b23c4d, little-endian).
	if !strings.HasPrefix(hexOf(r.body[:4]), "4d3cb2a1") {
		t.Fatalf("magic % x", r.body[:4])
	}
	assertAudit(t, api, "capture", "packets")
}

func TestFilterExcludes(t *testing.T) {
	api, a := setup(t)
	other := a.pair.Peer.DialUDP(t, netipAppPort(udpPort+1))
	a.pair.App.ListenUDP(t, netipAppPort(udpPort+1))
	resp := startCapture(t, api, url.Values{"filter": {fmt.Sprintf("udp dst port %d", udpPort)}, "packets": {"20"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := range 20 {
		if _, err := other.Write(payload("excluded", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.conn.Write(payload("included", i)); err != nil {
			t.Fatal(err)
		}
	}
	r := finish(t, resp)
	rows := tshark(t, r.file, "udp.dstport", "udp.payload")
	if len(rows) != 20 {
		t.Fatalf("%d packets", len(rows))
	}
	for i, row := range rows {
		if row[0] != fmt.Sprint(udpPort) || row[1] != hexOf(payload("included", i)) {
			t.Fatalf("packet %d: %v", i, row)
		}
	}
}

func TestSnaplenTruncates(t *testing.T) {
	api, a := setup(t)
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "snaplen": {"50"}, "packets": {"5"}})
	a.send(t, "snap", 5)
	r := finish(t, resp)
	rows := tshark(t, r.file, "frame.cap_len", "frame.len")
	if len(rows) != 5 {
		t.Fatalf("%d packets", len(rows))
	}
	wantLen := 14 + 20 + 8 + len(payload("snap", 0))
	for _, row := range rows {
		if row[0] != "50" || row[1] != fmt.Sprint(wantLen) {
			t.Fatalf("captured %s of %s bytes, want 50 of %d", row[0], row[1], wantLen)
		}
	}
}

func TestTwoInstancesOnTwoCellsMergeIntoOnePcapng(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a0, a1 := newApp(t), newApp(t)
	targets := []apiconfig.DevTarget{
		{AppGUID: appGUID, AppName: appName, Index: 0, CellIP: "127.0.0.1"},
		{AppGUID: appGUID, AppName: appName, Index: 1, CellIP: "127.0.0.2"},
	}
	api := startAPI(t, p, targets, nil)
	startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a0.pair.App.Path()})
	startAgent(t, p, api, "127.0.0.2", map[string]string{appGUID + "/1": a1.pair.App.Path()})

	const n = 50
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "format": {"pcapng"}, "packets": {fmt.Sprint(2 * n)}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Pcap-Instances") != "0,1" {
		t.Fatalf("status %d, instances %q", resp.StatusCode, resp.Header.Get("Pcap-Instances"))
	}
	for i := range n {
		if _, err := a0.conn.Write(payload("zero", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := a1.conn.Write(payload("one", i)); err != nil {
			t.Fatal(err)
		}
	}
	r := finish(t, resp)
	rows := tshark(t, r.file, "frame.interface_id", "frame.interface_name", "udp.payload", "frame.time_epoch")
	if len(rows) != 2*n {
		t.Fatalf("%d packets, want %d", len(rows), 2*n)
	}
	next := map[string]int{}
	last := ""
	for _, row := range rows {
		iface, name, data, ts := row[0], row[1], row[2], row[3]
		tag := map[string]string{"0": "zero", "1": "one"}[iface]
		if wantName := fmt.Sprintf("%s/%s", appName, iface); name != wantName || tag == "" {
			t.Fatalf("interface %s named %q", iface, name)
		}
		if data != hexOf(payload(tag, next[tag])) {
			t.Fatalf("interface %s: packet %d out of order or wrong", iface, next[tag])
		}
		next[tag]++
		if ts < last {
			t.Fatalf("timestamps not merged in order: %s after %s", ts, last)
		}
		last = ts
	}
}

func TestBadFilterIs400WithLibpcapMessage(t *testing.T) {
	api, _ := setup(t)
	resp := startCapture(t, api, url.Values{"filter": {"udp port nine"}})
	r := finish(t, resp)
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" || p.Status != 400 {
		t.Fatalf("status %d, type %q", r.status, r.header.Get("Content-Type"))
	}
	if !strings.Contains(p.Detail, "nine") || !strings.Contains(p.Detail, "unknown port") {
		t.Fatalf("detail %q lacks libpcap's message", p.Detail)
	}
}

func TestAgentKilledMidCaptureLeavesValidFile(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	agent := startAgentProcess(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})

	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	const n = 10
	a.send(t, "before-kill", n)
	// Read until the packets sent are in, then kill the agent.
	got := readPackets(t, resp, n)
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := finish(t, resp)
	r.body = append(got, r.body...)
	if err := os.WriteFile(r.file, r.body, 0o644); err != nil {
		t.Fatal(err)
	}
	rows := tshark(t, r.file, "udp.payload")
	if len(rows) != n {
		t.Fatalf("%d packets in the file, want %d", len(rows), n)
	}
	if got := r.trailer.Get("Pcap-End-Reason"); got != "agent_lost" {
		t.Fatalf("end reason %q, want agent_lost", got)
	}
}

func TestIdleCaptureEndsAtDuration(t *testing.T) {
	api, _ := setup(t)
	start := time.Now()
	resp := startCapture(t, api, url.Values{"duration": {"1s"}, "filter": {"udp port 1"}})
	r := finish(t, resp)
	if r.trailer.Get("Pcap-End-Reason") != "duration" || r.trailer.Get("Pcap-Packets") != "0" {
		t.Fatalf("trailer %v", r.trailer)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Fatalf("a 1s capture took %v", d)
	}
	if rows := tshark(t, r.file, "frame.number"); len(rows) != 0 {
		t.Fatalf("%d packets in an idle capture", len(rows))
	}
}

// With several devices, one device's capture that ends on its own ends
// the instance's others: eth0 removed means the container is gone,
// though its lo lives on while the capture holds the namespace.
func TestContainerGoneEndsCapture(t *testing.T) {
	for _, devices := range []string{"eth0", "eth0,lo"} {
		t.Run(devices, func(t *testing.T) {
			api, a := setup(t)
			resp := startCapture(t, api, url.Values{"device": {devices}, "filter": {"udp"}, "duration": {"5m"}})
			a.send(t, "gone", 5)
			got := readPackets(t, resp, 5)
			netnstest.IP(t, "-n", a.pair.App.Name, "link", "del", "eth0")
			finishContainerGone(t, resp, got, 5)
		})
	}
}

// finishContainerGone reads the rest of a capture whose first bytes, got,
// were read already, and checks that it ended container_gone with the
// want datagrams in the file.
func finishContainerGone(t *testing.T, resp *http.Response, got []byte, want int) {
	t.Helper()
	r := finish(t, resp)
	if reason := r.trailer.Get("Pcap-End-Reason"); reason != "container_gone" {
		t.Fatalf("end reason %q, want container_gone", reason)
	}
	if err := os.WriteFile(r.file, append(got, r.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	if rows := tshark(t, r.file, "udp.payload"); len(rows) != want {
		t.Fatalf("%d packets, want the %d sent before the end", len(rows), want)
	}
}

func TestAPIDrainEndsCapturesCleanly(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), func(c *apiconfig.Config) {
		c.DrainTimeout = configDuration(500 * time.Millisecond)
	})
	startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	a.send(t, "drain", 7)
	got := readPackets(t, resp, 7)
	stopped := make(chan error, 1)
	go func() { stopped <- api.stop() }()
	r := finish(t, resp)
	if reason := r.trailer.Get("Pcap-End-Reason"); reason != "api_draining" {
		t.Fatalf("end reason %q", reason)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.file, append(got, r.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	if rows := tshark(t, r.file, "udp.payload"); len(rows) != 7 {
		t.Fatalf("%d packets", len(rows))
	}
}

func TestAgentShutdownEndsCaptureAsDraining(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	a := newApp(t)
	api := startAPI(t, p, oneInstance("127.0.0.1"), nil)
	stop := startAgent(t, p, api, "127.0.0.1", map[string]string{appGUID + "/0": a.pair.App.Path()})
	resp := startCapture(t, api, url.Values{"filter": {"udp"}, "duration": {"1m"}})
	a.send(t, "agent-stop", 3)
	got := readPackets(t, resp, 3)
	go stop()
	r := finish(t, resp)
	if reason := r.trailer.Get("Pcap-End-Reason"); reason != "agent_draining" {
		t.Fatalf("end reason %q", reason)
	}
	if err := os.WriteFile(r.file, append(got, r.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	if rows := tshark(t, r.file, "udp.payload"); len(rows) != 3 {
		t.Fatalf("%d packets", len(rows))
	}
}

func TestRequestErrors(t *testing.T) {
	api, _ := setup(t)
	cases := []struct {
		name, path, token string
		status            int
		detail            string
	}{
		{"no token", "/v1/apps/" + appGUID + "/capture", "", 401, "missing Authorization header"},
		{"wrong token", "/v1/apps/" + appGUID + "/capture", "nope", 401, "invalid token"},
		{"unknown app", "/v1/apps/00000000-0000-0000-0000-000000000000/capture", devToken, 404, "has no web process"},
		{"unknown instance", "/v1/apps/" + appGUID + "/capture?instance=7", devToken, 404, "no instance 7"},
		{"bad snaplen", "/v1/apps/" + appGUID + "/capture?snaplen=70000", devToken, 400, "exceeds the maximum"},
		{"bad duration", "/v1/apps/" + appGUID + "/capture?duration=soon", devToken, 400, "duration"},
		{"unknown parameter", "/v1/apps/" + appGUID + "/capture?packet=3", devToken, 400, "unknown query parameter"},
		{"bad format", "/v1/apps/" + appGUID + "/capture?format=json", devToken, 400, "format"},
		{"bad device", "/v1/apps/" + appGUID + "/capture?device=../etc", devToken, 400, "device"},
		{"device missing in container", "/v1/apps/" + appGUID + "/capture?device=eth7", devToken, 400, "eth7"},
		{"long filter", "/v1/apps/" + appGUID + "/capture?filter=" + strings.Repeat("x", 5001), devToken, 400, "maximum is 5000"},
		{"no such endpoint", "/v2/things", devToken, 404, "no such endpoint"},
		{"agents needs auth", "/v1/agents", "", 401, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, api.url+c.path, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&p)
			if resp.StatusCode != c.status || p.Status != c.status || !strings.Contains(p.Detail, c.detail) {
				t.Fatalf("got %d %q, want %d with %q", resp.StatusCode, p.Detail, c.status, c.detail)
			}
			if resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestNoAgentForCellIs503(t *testing.T) {
	netnstest.RequireRoot(t)
	p := newPKI(t)
	api := startAPI(t, p, oneInstance("127.0.0.9"), nil)
	r := finish(t, startCapture(t, api, url.Values{}))
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "no agent connected for cell 127.0.0.9") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestHealthAndAgentList(t *testing.T) {
	api, _ := setup(t)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(api.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, api.url+"/v1/agents", nil)
	req.Header.Set("Authorization", "bearer "+devToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Agents []struct {
			ID      string   `json:"id"`
			CellIPs []string `json:"cell_ips"`
		} `json:"agents"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Agents) != 1 || body.Agents[0].ID != "cell-127.0.0.1" || body.Agents[0].CellIPs[0] != "127.0.0.1" {
		t.Fatalf("agents %+v", body.Agents)
	}
}
