package garden_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/garden"
	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
)

func newClient(t *testing.T, g *fakegarden.Garden, timeout time.Duration) *garden.Client {
	t.Helper()
	c, err := garden.NewClient(g.Network, g.Address, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewClientChecksArguments(t *testing.T) {
	if _, err := garden.NewClient("udp", "x", 0); err == nil || !strings.Contains(err.Error(), "unix or tcp") {
		t.Errorf("udp: %v", err)
	}
	if _, err := garden.NewClient("unix", "", 0); err == nil {
		t.Error("empty address accepted")
	}
}

func TestClientRoutes(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		g := fakegarden.New(t)
		if tcp {
			g = fakegarden.NewTCP(t)
		}
		c := newClient(t, g, 0)
		ctx := t.Context()
		a0 := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 0})
		a1 := g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-a", Index: 1})
		g.AddAppContainer(fakegarden.AppContainer{AppGUID: "app-b", Index: 0})

		if err := c.Ping(ctx); err != nil {
			t.Errorf("%s: ping: %v", g.Network, err)
		}
		handles, err := c.Containers(ctx, map[string]string{"network.app_id": "app-a", "executor:owner": "executor"})
		slices.Sort(handles)
		want := []string{a0, a1}
		slices.Sort(want)
		if err != nil || !slices.Equal(handles, want) {
			t.Errorf("%s: containers = %v, %v; want %v", g.Network, handles, err, want)
		}
		props, err := c.Properties(ctx, a1)
		if err != nil || props["network.app_id"] != "app-a" || !strings.Contains(props["log_config"], `"index":1`) {
			t.Errorf("%s: properties = %v, %v", g.Network, props, err)
		}
		info, err := c.Info(ctx, a0)
		if err != nil || info.State != "active" || info.Properties["network.app_id"] != "app-a" || info.ContainerPath == "" {
			t.Errorf("%s: info = %+v, %v", g.Network, info, err)
		}
		// Garden answers 200 null for properties, 404 for info.
		_, err = c.Properties(ctx, "gone")
		var ge *garden.Error
		if !garden.IsContainerNotFound(err) || !errors.As(err, &ge) || ge.Handle != "gone" {
			t.Errorf("%s: properties of a missing container: %v", g.Network, err)
		}
		_, err = c.Info(ctx, "gone")
		if !garden.IsContainerNotFound(err) || !errors.As(err, &ge) || ge.Status != 404 || ge.Handle != "gone" || ge.Message != "unknown handle: gone" {
			t.Errorf("%s: info of a missing container: %v", g.Network, err)
		}
	}
}

// The filter goes on the wire as garden's client sends it, the colon of
// executor:owner escaped.
func TestClientEncodesFilter(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "g.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	queries := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.Method + " " + r.Host + " " + r.URL.Path + "?" + r.URL.RawQuery
		w.Write([]byte(`{"Handles":["h"]}`))
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })

	c, err := garden.NewClient("unix", sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Containers(t.Context(), map[string]string{"executor:owner": "executor", "network.app_id": "a b"}); err != nil {
		t.Fatal(err)
	}
	if got, want := <-queries, "GET api /containers?executor%3Aowner=executor&network.app_id=a+b"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
}

func TestClientFailures(t *testing.T) {
	g := fakegarden.New(t)
	// The default call timeout: reading a megabyte under the race
	// detector on a busy machine can take longer than the short one.
	c := newClient(t, g, 0)
	ctx := t.Context()

	g.Inject(fakegarden.ListContainers, fakegarden.Fault{Status: 500, Body: "<html>\nproxy error</html>"})
	_, err := c.Containers(ctx, nil)
	var ge *garden.Error
	if !errors.As(err, &ge) || ge.Status != 500 || ge.Message != "<html>" || garden.IsContainerNotFound(err) {
		t.Errorf("non-JSON 500: %v", err)
	}

	g.Inject(fakegarden.ListContainers, fakegarden.Fault{Status: 200, Body: `{"Handles":[` + strings.Repeat(`"x",`, 300000) + `"x"]}`})
	if _, err := c.Containers(ctx, nil); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized reply: %v", err)
	}

	g.Inject(fakegarden.ListContainers, fakegarden.Fault{Status: 200, Body: `{"Handles":"h"}`})
	if _, err := c.Containers(ctx, nil); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("malformed reply: %v", err)
	}

	g.Inject(fakegarden.Ping, fakegarden.Fault{Delay: time.Hour})
	start := time.Now()
	if err := newClient(t, g, 200*time.Millisecond).Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow garden: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call timeout of 200ms took %v", d)
	}

	g.Clear()
	if err := c.Ping(ctx); err != nil {
		t.Errorf("after Clear: %v", err)
	}
	g.Close()
	var oe *net.OpError
	if err := c.Ping(ctx); !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("garden down: %v", err)
	}
}
