package nsenter_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/cellagent/nsenter"
	"github.com/cloudfoundry/pcap-server-release/test/netnstest"
	"github.com/vishvananda/netns"
)

func TestDoSwitchesAndRestores(t *testing.T) {
	ns := netnstest.NewNamespace(t)
	netnstest.IP(t, "-n", ns.Name, "link", "add", "dummy7", "type", "veth", "peer", "name", "dummy8")
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	// Many concurrent entries: none may leave a thread in the namespace.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			err := nsenter.Do(ns.Path(), false, func() error {
				_, err := net.InterfaceByName("dummy7")
				return err
			})
			if err != nil {
				t.Error("inside:", err)
			}
		})
	}
	wg.Wait()
	for range 50 {
		runtime.Gosched()
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		same := cur.Equal(host)
		cur.Close()
		if !same {
			t.Fatal("a thread was left in the test namespace")
		}
		if _, err := net.InterfaceByName("dummy7"); err == nil {
			t.Fatal("the namespace's interface is visible outside it")
		}
	}
}

func TestDoRefusesOwnNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	called := false
	err := nsenter.Do("/proc/self/ns/net", false, func() error { called = true; return nil })
	if !errors.Is(err, nsenter.ErrOwnNamespace) || called {
		t.Fatalf("err %v, called %v", err, called)
	}
	if err := nsenter.Do("/proc/self/ns/net", true, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("allowOwn: err %v, called %v", err, called)
	}
}

func TestDoMissingPath(t *testing.T) {
	err := nsenter.Do("/run/netns/does-not-exist", false, func() error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}
