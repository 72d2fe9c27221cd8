// Package realcf finds the real Cloud Foundry binaries that tests run the
// product with: gorouter, route-registrar and nats-server
// (routing-release), the cf CLI, and garden's gdn with runc, init, dadoo
// and nstar. They are built from their upstream sources (README.md here
// names each source and commit) and kept as archives beside the checkout,
// in ../shared/realcf, or wherever $REALCF_DIR points.
//
// A test that needs them calls Require, which unpacks the archives once
// (shared by every test binary through a lock and a cache keyed by their
// checksums) or skips the test with a message naming the tier and how to
// get the binaries.
package realcf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Binaries are the unpacked real parts and their example configs.
type Binaries struct {
	// Dir holds routing/, cf/, garden/ and tools/ as unpack.sh lays them out.
	Dir string
	// Source is the folder with the archives, unpack.sh and examples/.
	Source string
}

// Paths of the binaries, as unpack.sh lays them out.
func (b *Binaries) Gorouter() string       { return filepath.Join(b.Dir, "routing", "gorouter") }
func (b *Binaries) RouteRegistrar() string { return filepath.Join(b.Dir, "routing", "route-registrar") }
func (b *Binaries) NATSServer() string     { return filepath.Join(b.Dir, "routing", "nats-server") }
func (b *Binaries) CF() string             { return filepath.Join(b.Dir, "cf", "cf") }
func (b *Binaries) Garden(name string) string {
	return filepath.Join(b.Dir, "garden", name) // gdn, runc, init, dadoo, nstar
}
func (b *Binaries) Gardenctl() string { return filepath.Join(b.Dir, "tools", "gardenctl") }

// Example is a file of the source folder's examples/ (gorouter.yml.tmpl,
// route_registrar.json.tmpl, netplugin.sh).
func (b *Binaries) Example(name string) string { return filepath.Join(b.Source, "examples", name) }

// EnvDir names a folder holding the archives and unpack.sh, for checkouts
// that do not sit beside ../shared.
const EnvDir = "REALCF_DIR"

var unpacked struct {
	once sync.Once
	bin  *Binaries
	err  error
}

// Require returns the real binaries, or skips tb saying which tier needs
// them and how to get them. tier names what the test is about ("gorouter",
// "cf CLI", "garden").
func Require(tb testing.TB, tier string) *Binaries {
	tb.Helper()
	unpacked.once.Do(func() { unpacked.bin, unpacked.err = unpack() })
	if unpacked.err != nil {
		tb.Skipf("skipped: the real-parts tier (%s) needs the real Cloud Foundry binaries: %v; "+
			"CI has them in ../shared/realcf; elsewhere set %s to a folder with the archives, "+
			"or build them from their upstream sources with scripts/build-realcf.sh (test/realcf/README.md)",
			tier, unpacked.err, EnvDir)
	}
	return unpacked.bin
}

// SourceDir is where the archives are: $REALCF_DIR, else ../shared/realcf
// beside the repository's top directory.
func SourceDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(dir), "shared", "realcf"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// unpack runs the source folder's unpack.sh under an exclusive lock: test
// binaries of several packages run at once and unpack into one cache.
func unpack() (*Binaries, error) {
	src, err := SourceDir()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(src, "unpack.sh")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%s not found", script)
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "realcf-unpack.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock for unpacking: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock for unpacking: %w", err)
	}
	out, err := exec.Command(script).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("%s: %w: %s", script, err, stderr)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "routing", "gorouter")); err != nil {
		return nil, fmt.Errorf("%s unpacked into %s, which has no routing/gorouter", script, dir)
	}
	return &Binaries{Dir: dir, Source: src}, nil
}
