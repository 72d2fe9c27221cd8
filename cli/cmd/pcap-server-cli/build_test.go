package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI is downloaded by users on every common platform, so it must
// build without cgo (no libpcap) for all of them.
func TestBuildsPureGoForEveryPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: cross-compiles six binaries")
	}
	list := exec.Command("go", "list", "-deps", ".")
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"gopacket/pcap", "vishvananda/netns", "coreos/go-oidc", "hashicorp/yamux"} {
			if strings.Contains(dep, banned) {
				t.Errorf("the CLI depends on %s", dep)
			}
		}
	}
	dir := t.TempDir()
	for _, target := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"} {
		goos, goarch, _ := strings.Cut(target, "/")
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, goos+"-"+goarch), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("build for %s: %v\n%s", target, err, out)
		}
	}
}
