package realcf

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	helperEnv     = "REALCF_GARDEN_HELPER"
	helperModeEnv = "REALCF_GARDEN_HELPER_MODE"
)

// TestGardenHelperKilledMidTest is the test binary that
// TestGardenLeftoversOfAKilledRunAreRemoved kills: a gdn with a
// container, then nothing until the kill.
func TestGardenHelperKilledMidTest(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("skipped: only the child process of TestGardenLeftoversOfAKilledRunAreRemoved runs it")
	}
	mode := GdnNetworking
	if os.Getenv(helperModeEnv) == PluginNetworking.String() {
		mode = PluginNetworking
	}
	g := StartGarden(t, mode)
	g.Create(t, AppContainer{AppGUID: "killed-app"})
	os.Stdout.WriteString("READY\n")
	select {}
}

// A test binary killed mid-test (go test's -timeout, a ^C) runs no
// clean-up: gdn dies with it, its container, chains, links, cgroups,
// mounts and work directory stay, and ip_forward stays 1. The next
// StartGarden removes all of it and restores ip_forward.
func TestGardenLeftoversOfAKilledRunAreRemoved(t *testing.T) {
	RequireGarden(t)
	for _, mode := range []GardenNetworking{GdnNetworking, PluginNetworking} {
		t.Run(mode.String(), func(t *testing.T) {
			forward, err := os.ReadFile(ipForward)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if now, _ := os.ReadFile(ipForward); string(now) != string(forward) {
					t.Errorf("ip_forward is %s after the clean-up, was %s", now, forward)
				}
			})
			cmd := exec.Command(os.Args[0], "-test.run=^TestGardenHelperKilledMidTest$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"=1", helperModeEnv+"="+mode.String())
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan bool, 1)
			var lines []string
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines = append(lines, sc.Text())
					if sc.Text() == "READY" {
						ready <- true
						return
					}
				}
				ready <- false
			}()
			select {
			case ok := <-ready:
				if !ok {
					_ = cmd.Wait()
					t.Fatalf("the child ended before its container was up:\n%s", strings.Join(lines, "\n"))
				}
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("the child's container was not up within 2 minutes")
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			left := strings.Join(gardenLeftovers(), "; ")
			t.Logf("left by the killed run: %s", left)
			for _, want := range []string{"work directories", "containers", "cgroups garden-" + GardenTag, cgroupMountDir} {
				if !strings.Contains(left, want) {
					t.Errorf("the killed run left no %s: %s", want, left)
				}
			}
			if mode == GdnNetworking && !strings.Contains(left, "iptables -t nat chains") {
				t.Errorf("the killed run left no iptables chains: %s", left)
			}
			if mode == PluginNetworking && (!strings.Contains(left, "network plugin links [gdnp101h]") || !strings.Contains(left, "/netns/")) {
				t.Errorf("the killed run left no plugin link or namespace bind mount: %s", left)
			}
			// Takes the place of the killed one; its own clean-up then
			// checks that nothing of either is left.
			g := StartGarden(t, mode)
			if ids := killedRunContainers(); len(ids) != 0 {
				t.Errorf("containers of the killed run are still there: %v", ids)
			}
			c := g.Create(t, AppContainer{AppGUID: "next-app"})
			g.ServeHTTP(t, c, "after a killed run")
		})
	}
}
