package garden_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/garden"
	"github.com/cloudfoundry/pcap-server-release/test/fakegarden"
	"github.com/cloudfoundry/pcap-server-release/test/realcf"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// realCell is the locator against a real gdn, configured as on a cell in
// that networking mode.
func realCell(t *testing.T, mode realcf.GardenNetworking) (*realcf.Garden, *garden.Locator) {
	t.Helper()
	g := realcf.StartGarden(t, mode)
	return g, realLocator(t, g, "")
}

// realLocator is a locator of g's containers whose rep names them owner
// (empty: the default).
func realLocator(t *testing.T, g *realcf.Garden, owner string) *garden.Locator {
	t.Helper()
	var logs bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("locator log:\n%s", logs.String())
		}
	})
	loc, err := garden.New(garden.Config{
		Network:            "unix",
		Address:            g.Socket,
		ContainerNetnsDir:  g.NetnsDir,
		RuncRoots:          []string{"/run/containerd/runc/garden", g.RuncRoot},
		ContainerOwnerName: owner,
		Logger:             slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loc.Close)
	return loc
}

// The locator against real garden in both networking modes: containers
// created as Diego's executor creates them are found by handle and by
// properties, in their own network namespace, and a handle garden does
// not know is "not on this cell".
func TestRealGardenLocate(t *testing.T) {
	for _, mode := range []realcf.GardenNetworking{realcf.GdnNetworking, realcf.PluginNetworking} {
		t.Run(mode.String(), func(t *testing.T) {
			g, loc := realCell(t, mode)
			a0 := g.Create(t, realcf.AppContainer{AppGUID: "app-a", Index: 0})
			a1 := g.Create(t, realcf.AppContainer{AppGUID: "app-a", Index: 1})
			b1 := g.Create(t, realcf.AppContainer{AppGUID: "app-b", Index: 1})
			created := map[string]*realcf.Container{a0.Handle: a0, a1.Handle: a1, b1.Handle: b1}
			wantNetns := func(handle string) string {
				if mode == realcf.PluginNetworking {
					return filepath.Join(g.NetnsDir, handle)
				}
				return fmt.Sprintf("/proc/%d/ns/net", g.InitPID(t, handle))
			}
			for _, tc := range []struct {
				name string
				req  *wire.CaptureRequest
				want string
			}{
				{"by handle", &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: a1.Handle}, a1.Handle},
				{"by properties", &wire.CaptureRequest{AppGUID: "app-a", ProcessType: "web", Index: 0}, a0.Handle},
				{"by properties, other app", &wire.CaptureRequest{AppGUID: "app-b", Index: 1}, b1.Handle},
			} {
				got, err := locate(t, loc, tc.req)
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if got.Handle != tc.want || got.NetnsPath != wantNetns(tc.want) {
					t.Errorf("%s: %+v, want handle %s in %s", tc.name, got, tc.want, wantNetns(tc.want))
				}
				if netnsID(t, got.NetnsPath) != netnsID(t, g.Netns(t, tc.want)) {
					t.Errorf("%s: %s is not the container's namespace", tc.name, got.NetnsPath)
				}
				// The interface a capture of eth0 opens: gdn's networking
				// has no eth0, and names the container's end w<tag>…-1.
				wantIface := "eth0"
				if mode == realcf.GdnNetworking {
					wantIface = created[tc.want].Properties["kawasaki.container-interface"]
				}
				if got.Interface != wantIface || (mode == realcf.GdnNetworking && !strings.HasPrefix(got.Interface, "w"+realcf.GardenTag)) {
					t.Errorf("%s: interface %q, want %q", tc.name, got.Interface, wantIface)
				}
				if got.End == nil {
					t.Errorf("%s: the container's end is not watched", tc.name)
				}
			}

			// Garden answers 200 null for the properties of a handle it
			// does not have: the instance is not on this cell.
			gone := fakegarden.InstanceGUID()
			_, err := locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 4, InstanceGUID: gone})
			locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 4 on this cell (instance guid "+gone+")")
			_, err = locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 4})
			locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 4 on this cell", "web/0, web/1")
			// Another app's container, by its handle.
			_, err = locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: b1.Handle})
			locateErr(t, err, wire.ErrContainerNotFound, "container "+b1.Handle+" on this cell is not an instance of app app-a")

			// Destroy ends the watch of a located container, and the
			// container is gone from garden at once.
			located, err := locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: a1.Handle})
			if err != nil || located.End == nil {
				t.Fatalf("a1: %+v, %v", located, err)
			}
			g.Destroy(t, a1.Handle)
			select {
			case <-located.End.Ended():
				t.Logf("after destroy: %s", located.End.Why())
			case <-time.After(30 * time.Second):
				t.Fatal("garden destroyed the container, but its end was not seen within 30s")
			}
			_, err = locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: a1.Handle})
			locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 1 on this cell")
		})
	}
}

// A rep with another container_owner_name (diego.executor.
// container_owner_name) labels its containers so: the agent finds them
// when garden.container_owner_name says the same, and leaves the
// containers of other owners alone.
func TestRealGardenContainerOwnerName(t *testing.T) {
	g := realcf.StartGarden(t, realcf.PluginNetworking)
	mine := g.Create(t, realcf.AppContainer{AppGUID: "app-a", Index: 0, Owner: "cell-executor"})
	theirs := g.Create(t, realcf.AppContainer{AppGUID: "app-a", Index: 1})

	loc := realLocator(t, g, "cell-executor")
	for _, req := range []*wire.CaptureRequest{
		{AppGUID: "app-a", Index: 0},
		{AppGUID: "app-a", Index: 0, InstanceGUID: mine.Handle},
	} {
		if got, err := locate(t, loc, req); err != nil || got.Handle != mine.Handle {
			t.Errorf("owner cell-executor, %+v: %+v, %v", req, got, err)
		}
	}
	_, err := locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 1 on this cell", "web/0")
	_, err = locate(t, loc, &wire.CaptureRequest{AppGUID: "app-a", Index: 1, InstanceGUID: theirs.Handle})
	locateErr(t, err, wire.ErrContainerNotFound, "not an instance of app app-a")

	// The default owner, executor, is the other rep's.
	if got, err := locate(t, realLocator(t, g, ""), &wire.CaptureRequest{AppGUID: "app-a", Index: 1}); err != nil || got.Handle != theirs.Handle {
		t.Errorf("default owner: %+v, %v", got, err)
	}
	_, err = locate(t, realLocator(t, g, ""), &wire.CaptureRequest{AppGUID: "app-a", Index: 0})
	locateErr(t, err, wire.ErrContainerNotFound, "no container of app app-a instance 0 on this cell")
}
