package fakegarden_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
)

// gardenClient dials the fake garden whatever the URL's host, as garden's
// own client does with http://api.
func gardenClient(t *testing.T, g *fakegarden.Garden) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, g.Network, g.Address)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// gardenGet does a GET on the fake garden and decodes the JSON body into
// v (when not nil).
func gardenGet(t *testing.T, c *http.Client, rawPath string, v any) int {
	t.Helper()
	resp, err := c.Get("http://api" + rawPath)
	if err != nil {
		t.Fatalf("GET %s: %v", rawPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %q", rawPath, err, body)
		}
	}
	return resp.StatusCode
}

type gardenErrorBody struct {
	Type, Message, Handle, ProcessID, Binary *string
}

func TestGardenDiegoContainerShapes(t *testing.T) {
	g := fakegarden.New(t)
	if g.Network != "unix" {
		t.Fatalf("network %q", g.Network)
	}
	c := gardenClient(t, g)
	h := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-1", AppName: "my-app", SpaceGUID: "space-1", OrgGUID: "org-1", Index: 2})
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`).MatchString(h) {
		t.Errorf("handle %q is not an instance guid (28 characters)", h)
	}

	var ping map[string]any
	if status := gardenGet(t, c, "/ping", &ping); status != 200 || len(ping) != 0 {
		t.Errorf("ping: %d %v", status, ping)
	}

	var props map[string]string
	if status := gardenGet(t, c, "/containers/"+h+"/properties", &props); status != 200 {
		t.Fatalf("properties: %d", status)
	}
	want := map[string]string{
		"executor:owner":             "executor",
		"network.app_id":             "app-1",
		"network.space_id":           "space-1",
		"network.org_id":             "org-1",
		"network.container_workload": "app",
		"garden.state":               "created",
	}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("property %s = %q, want %q", k, props[k], v)
		}
	}
	// log_config is a JSON document inside a string property.
	var lc struct {
		GUID       string            `json:"guid"`
		Index      *int              `json:"index"`
		SourceName string            `json:"source_name"`
		Tags       map[string]string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(props["log_config"]), &lc); err != nil {
		t.Fatalf("log_config %q: %v", props["log_config"], err)
	}
	if lc.GUID != "app-1" || lc.Index == nil || *lc.Index != 2 || lc.SourceName != "CELL" ||
		lc.Tags["process_type"] != "web" || lc.Tags["process_instance_id"] != h || lc.Tags["app_name"] != "my-app" {
		t.Errorf("log_config = %+v", lc)
	}

	var info map[string]json.RawMessage
	if status := gardenGet(t, c, "/containers/"+h+"/info", &info); status != 200 {
		t.Fatalf("info: %d", status)
	}
	for _, k := range []string{"State", "HostIP", "ContainerIP", "ExternalIP", "ContainerPath", "Properties", "MappedPorts"} {
		if _, ok := info[k]; !ok {
			t.Errorf("info lacks %s: %v", k, info)
		}
	}
	var infoProps map[string]string
	if err := json.Unmarshal(info["Properties"], &infoProps); err != nil || infoProps["log_config"] != props["log_config"] {
		t.Errorf("info Properties = %s (%v)", info["Properties"], err)
	}

	worker := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-1", ProcessType: "worker", NoProcessTypeTag: true})
	gardenGet(t, c, "/containers/"+worker+"/properties", &props)
	lc.Tags = nil
	if err := json.Unmarshal([]byte(props["log_config"]), &lc); err != nil {
		t.Fatal(err)
	}
	if _, ok := lc.Tags["process_type"]; ok || *lc.Index != 0 {
		t.Errorf("NoProcessTypeTag: log_config = %+v", lc)
	}
}

func TestListFilters(t *testing.T) {
	g := fakegarden.New(t)
	c := gardenClient(t, g)
	a0 := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
	a1 := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 1})
	b0 := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-b", Index: 0})
	task := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Workload: "task"})
	g.AddContainer("plain", nil)
	g.AddContainer("stopping", map[string]string{"garden.state": "destroying", "network.app_id": "app-a"})

	list := func(rawQuery string) []string {
		t.Helper()
		var reply struct{ Handles []string }
		if status := gardenGet(t, c, "/containers"+rawQuery, &reply); status != 200 {
			t.Fatalf("list %s: %d", rawQuery, status)
		}
		if reply.Handles == nil {
			t.Fatalf("list %s: Handles is null, garden sends []", rawQuery)
		}
		slices.Sort(reply.Handles)
		return reply.Handles
	}
	sorted := func(hs ...string) []string { slices.Sort(hs); return hs }

	cases := []struct {
		query string
		want  []string
	}{
		{"", sorted(a0, a1, b0, task, "plain")},
		{"?executor%3Aowner=executor&network.app_id=app-a&network.container_workload=app", sorted(a0, a1)},
		{"?network.app_id=app-a", sorted(a0, a1, task)},
		{"?network.app_id=app-a&garden.state=all", sorted(a0, a1, task, "stopping")},
		{"?garden.state=destroying", []string{"stopping"}},
		{"?network.app_id=app-b&no.such.property=x", []string{}},
		// Only the first value of a repeated parameter counts.
		{"?network.app_id=app-b&network.app_id=app-a", []string{b0}},
	}
	for _, tc := range cases {
		if got := list(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("list %q = %v, want %v", tc.query, got, tc.want)
		}
	}

	g.RemoveContainer(a1)
	g.SetProperty(a0, "network.app_id", "app-b")
	if got := list("?network.app_id=app-b"); !slices.Equal(got, sorted(a0, b0)) {
		t.Errorf("after changes: %v", got)
	}
	if got := g.Requests(fakegarden.ListContainers); got != len(cases)+1 {
		t.Errorf("list requests = %d, want %d", got, len(cases)+1)
	}
}

func TestGardenErrors(t *testing.T) {
	g := fakegarden.New(t)
	c := gardenClient(t, g)
	var e gardenErrorBody
	if status := gardenGet(t, c, "/containers/nope/info", &e); status != 404 {
		t.Errorf("info of a missing container: %d", status)
	}
	if e.Type == nil || *e.Type != fakegarden.ContainerNotFound || *e.Message != "unknown handle: nope" || *e.Handle != "nope" || e.ProcessID == nil || e.Binary == nil {
		t.Errorf("info error body = %+v", e)
	}
	// Real garden's properties route knows no error for it: 200 null.
	resp, err := c.Get("http://api/containers/nope/properties")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "null" {
		t.Errorf("properties of a missing container: %d %q", resp.StatusCode, body)
	}
	if status := gardenGet(t, c, "/containers/x/run", nil); status != 404 {
		t.Errorf("unknown route: %d", status)
	}
}

func TestFaults(t *testing.T) {
	g := fakegarden.New(t)
	c := gardenClient(t, g)
	h := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app"})

	g.Inject(fakegarden.GetProperties, fakegarden.Fault{Status: 500, Message: "boom"})
	var e gardenErrorBody
	if status := gardenGet(t, c, "/containers/"+h+"/properties", &e); status != 500 || *e.Type != "" || *e.Message != "boom" {
		t.Errorf("injected 500: %d %+v", status, e)
	}
	if status := gardenGet(t, c, "/containers/"+h+"/info", nil); status != 200 {
		t.Errorf("other endpoint during a fault: %d", status)
	}

	g.SetUnavailable("containerd is down")
	for _, p := range []string{"/ping", "/containers", "/containers/" + h + "/info"} {
		e = gardenErrorBody{}
		if status := gardenGet(t, c, p, &e); status != 500 || *e.Type != fakegarden.ServiceUnavailable || *e.Message != "containerd is down" {
			t.Errorf("unavailable %s: %d %+v", p, status, e)
		}
	}

	g.Clear()
	g.Inject(fakegarden.ListContainers, fakegarden.Fault{Status: 500, Body: "not json"})
	resp, err := c.Get("http://api/containers")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || string(b) != "not json" {
		t.Errorf("raw body: %d %q", resp.StatusCode, b)
	}

	g.Inject(fakegarden.Ping, fakegarden.Fault{Drop: true})
	if resp, err := c.Get("http://api/ping"); err == nil {
		resp.Body.Close()
		t.Error("dropped connection gave an answer")
	}

	g.Clear()
	g.Inject(fakegarden.AnyEndpoint, fakegarden.Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api/ping", nil)
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed request: %v", err)
	}

	g.Clear()
	if status := gardenGet(t, c, "/ping", nil); status != 200 {
		t.Errorf("after Clear: %d", status)
	}
	if got := g.Requests(fakegarden.GetProperties); got != 1 {
		t.Errorf("properties requests = %d, want 1", got)
	}
	if got := g.Requests("GET /containers/x/run"); got != 0 {
		t.Errorf("unrequested route counted %d", got)
	}
	if got := g.TotalRequests(); got < 10 {
		t.Errorf("total requests = %d, want at least 10", got)
	}
}

// Closing the fake is garden going down: the socket disappears, and a
// pending delayed answer does not hold Close up.
func TestGardenCloseRemovesSocket(t *testing.T) {
	g := fakegarden.New(t)
	c := gardenClient(t, g)
	g.Inject(fakegarden.AnyEndpoint, fakegarden.Fault{Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://api/ping")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for g.TotalRequests() == 0 {
		select {
		case err := <-errc:
			t.Fatalf("request ended early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a delayed request")
	}
	<-errc
	if _, err := os.Stat(g.Address); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after Close: %v", g.Address, err)
	}
	if _, err := net.Dial("unix", g.Address); err == nil {
		t.Error("dial succeeded after Close")
	}
}

func TestGardenTCP(t *testing.T) {
	g := fakegarden.NewTCP(t)
	if g.Network != "tcp" {
		t.Fatalf("network %q", g.Network)
	}
	c := gardenClient(t, g)
	h := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app"})
	var reply struct{ Handles []string }
	if status := gardenGet(t, c, "/containers?network.app_id=app", &reply); status != 200 || !slices.Equal(reply.Handles, []string{h}) {
		t.Errorf("list over TCP: %d %v", status, reply.Handles)
	}
}
