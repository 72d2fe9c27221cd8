package boshrelease

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// golangPackage compiles the Go toolchain from its blob for the others.
const golangPackage = "golang"

func packageSpec(t *testing.T, name string) *PackageSpec {
	t.Helper()
	s, err := LoadPackageSpec(filepath.Join(repoRoot(t), "packages", name, "spec"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// releasePackages lists packages/.
func releasePackages(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "packages"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestPackageSpecs(t *testing.T) {
	root := repoRoot(t)
	specs := map[string]*PackageSpec{}
	for _, name := range releasePackages(t) {
		s := packageSpec(t, name)
		if s.Name != name {
			t.Errorf("packages/%s/spec names the package %q", name, s.Name)
		}
		if !fileExists(filepath.Join(root, "packages", name, "packaging")) {
			t.Errorf("packages/%s has no packaging script", name)
		}
		if len(s.Files) == 0 {
			t.Errorf("packages/%s lists no files", name)
		}
		if fileExists(filepath.Join(root, "packages", name, "spec.lock")) {
			t.Errorf("packages/%s is vendored from another release (spec.lock): every package builds from this repository and its blobs", name)
		}
		specs[s.Name] = s
	}
	for name, s := range specs {
		for _, dep := range s.Dependencies {
			if _, ok := specs[dep]; !ok {
				t.Errorf("package %s depends on %s, which packages/ does not have", name, dep)
			}
		}
	}
	// Every package is needed: by a job, or by a package a job needs.
	needed := map[string]bool{}
	var need func(string)
	need = func(name string) {
		if needed[name] {
			return
		}
		needed[name] = true
		if s, ok := specs[name]; ok {
			for _, dep := range s.Dependencies {
				need(dep)
			}
		}
	}
	for _, job := range releaseJobs {
		for _, pkg := range jobSpec(t, job).Packages {
			need(pkg)
		}
	}
	for name := range specs {
		if !needed[name] {
			t.Errorf("package %s is used by no job", name)
		}
	}
	for _, pkg := range []string{"pcap-server", "pcap-server-api"} {
		if !slices.Contains(specs[pkg].Dependencies, golangPackage) {
			t.Errorf("package %s does not compile with the %s package", pkg, golangPackage)
		}
		if packaging := readFile(t, filepath.Join(root, "packages", pkg, "packaging")); !strings.Contains(packaging, `/golang/bosh/compile.env"`) {
			t.Errorf("packages/%s/packaging does not source the golang package's compile.env", pkg)
		}
	}
}

// TestGolangPackageIsTheGoThatGoModNeeds: the toolchain blob is a Go
// release at least as new as go.mod asks, and the packaging unpacks that
// module.
func TestGolangPackageIsTheGoThatGoModNeeds(t *testing.T) {
	root := repoRoot(t)
	files := packageSpec(t, golangPackage).Files
	if len(files) != 1 {
		t.Fatalf("packages/golang lists %v, want the toolchain blob alone", files)
	}
	m := regexp.MustCompile(`^golang/toolchain-(v0\.0\.1-go(\d+)\.(\d+)(?:\.(\d+))?\.linux-amd64)\.zip$`).FindStringSubmatch(files[0])
	if m == nil {
		t.Fatalf("packages/golang lists %s, not golang/toolchain-v0.0.1-goVERSION.linux-amd64.zip", files[0])
	}
	if packaging := readFile(t, filepath.Join(root, "packages/golang/packaging")); !strings.Contains(packaging, "module=golang.org/toolchain@"+m[1]+"\n") {
		t.Errorf("packages/golang/packaging does not unpack golang.org/toolchain@%s", m[1])
	}
	gomod := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?$`).FindStringSubmatch(readFile(t, filepath.Join(root, "go.mod")))
	if gomod == nil {
		t.Fatal("go.mod has no go line")
	}
	version := func(parts []string) [3]int {
		var v [3]int
		for i, p := range parts {
			if p != "" {
				fmt.Sscan(p, &v[i])
			}
		}
		return v
	}
	blob, want := version(m[2:5]), version(gomod[1:4])
	if slices.Compare(blob[:], want[:]) < 0 {
		t.Errorf("the toolchain blob is Go %v, go.mod needs %v", blob, want)
	}
}

type blob struct {
	path string
	size int64
	sha  string
}

func releaseBlobs(t *testing.T) []blob {
	t.Helper()
	doc, err := LoadYAML(filepath.Join(repoRoot(t), "config/blobs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var blobs []blob
	for path, v := range asMap(t, doc, "blobs.yml") {
		m := asMap(t, v, path)
		size, _ := m["size"].(int)
		blobs = append(blobs, blob{path: path, size: int64(size), sha: fmt.Sprint(m["sha"])})
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].path < blobs[j].path })
	return blobs
}

func TestBlobs(t *testing.T) {
	root := repoRoot(t)
	blobs := releaseBlobs(t)
	if len(blobs) == 0 {
		t.Fatal("config/blobs.yml declares no blob")
	}
	shaPattern := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	files := map[string]string{} // glob -> package
	for _, pkg := range releasePackages(t) {
		for _, f := range packageSpec(t, pkg).Files {
			files[f] = pkg
		}
	}
	for _, b := range blobs {
		if b.size <= 0 || !shaPattern.MatchString(b.sha) {
			t.Errorf("blob %s: size %d, sha %q", b.path, b.size, b.sha)
		}
		if _, ok := files[b.path]; !ok {
			t.Errorf("blob %s is in no package's files", b.path)
		}
	}
	for f, pkg := range files {
		if strings.HasPrefix(f, "pcap-server-release/") {
			continue // staged under src/ by scripts/build-release.sh
		}
		if !slices.ContainsFunc(blobs, func(b blob) bool { return b.path == f }) {
			t.Errorf("package %s lists %s, neither staged source nor a blob in config/blobs.yml", pkg, f)
		}
	}
	// The libpcap packaging script unpacks the blob its spec lists.
	packaging := readFile(t, filepath.Join(root, "packages/libpcap/packaging"))
	version := regexp.MustCompile(`(?m)^version=(\S+)$`).FindStringSubmatch(packaging)
	if version == nil {
		t.Fatal("packages/libpcap/packaging sets no version=")
	}
	if version[1] != "1.10.5" {
		t.Errorf("libpcap %s; 1.10.5 fixes CVE-2023-7256 and CVE-2024-8006", version[1])
	}
	if want := "libpcap/libpcap_" + version[1] + ".orig.tar.xz"; !slices.Equal(packageSpec(t, "libpcap").Files, []string{want}) {
		t.Errorf("libpcap packaging unpacks %s, its spec lists %v", want, packageSpec(t, "libpcap").Files)
	}
	// What make deps fetched into blobs/ is what blobs.yml declares.
	for _, b := range blobs {
		if path := filepath.Join(root, "blobs", b.path); fileExists(path) {
			if err := checkBlob(path, b); err != nil {
				t.Error(err)
			}
		}
	}
}

// localBlobs is the repository's blobs/ when it holds every blob, as
// scripts/fetch-blobs.sh (make deps) leaves it; else the test skips.
func localBlobs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "blobs")
	for _, b := range releaseBlobs(t) {
		if path := filepath.Join(dir, b.path); !fileExists(path) {
			t.Skipf("blobs/%s is missing: scripts/fetch-blobs.sh (run by make deps) fetches it", b.path)
		} else if err := checkBlob(path, b); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func checkBlob(path string, b blob) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != b.size || got != b.sha {
		return fmt.Errorf("%s: size %d, %s; config/blobs.yml says %d, %s", path, n, got, b.size, b.sha)
	}
	return nil
}

// releaseBlob is the entry of config/blobs.yml whose path has prefix.
func releaseBlob(t *testing.T, prefix string) blob {
	t.Helper()
	for _, b := range releaseBlobs(t) {
		if strings.HasPrefix(b.path, prefix) {
			return b
		}
	}
	t.Fatalf("config/blobs.yml has no blob under %s", prefix)
	return blob{}
}

// fetchBlobsCheckout lays out in a new directory what scripts/fetch-blobs.sh
// reads: itself, a config/blobs.yml with the entry b alone, and files.
func fetchBlobsCheckout(t *testing.T, b blob, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	entry, err := yaml.Marshal(map[string]any{b.path: map[string]any{"size": b.size, "sha": b.sha}})
	if err != nil {
		t.Fatal(err)
	}
	files = maps.Clone(files)
	files["config/blobs.yml"] = entry
	files["scripts/fetch-blobs.sh"] = []byte(readFile(t, filepath.Join(repoRoot(t), "scripts/fetch-blobs.sh")))
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFetchBlobsRefusesAWrongBlob runs scripts/fetch-blobs.sh on a copy of
// the repository whose blobs.yml holds the libpcap entry, with a file that
// is not that tarball on offer: it must refuse it and leave blobs/ empty.
func TestFetchBlobsRefusesAWrongBlob(t *testing.T) {
	libpcap := releaseBlob(t, "libpcap/")
	dir := fetchBlobsCheckout(t, libpcap, map[string][]byte{
		"offered/" + filepath.Base(libpcap.path): []byte("not the libpcap tarball"),
	})
	offered := filepath.Join(dir, "offered")
	cmd := exec.Command("bash", "scripts/fetch-blobs.sh")
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "BLOBS_FROM"), "BLOBS_FROM="+offered)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("fetch-blobs.sh accepted a wrong tarball:\n%s", out)
	}
	if want := fmt.Sprintf("refusing blob %s: ", libpcap.path); !strings.Contains(string(out), want) || !strings.Contains(string(out), fmt.Sprintf("config/blobs.yml wants size %d and %s", libpcap.size, libpcap.sha)) {
		t.Errorf("fetch-blobs.sh on a wrong tarball said:\n%s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "blobs", filepath.Dir(libpcap.path))); len(entries) > 0 {
		t.Errorf("the refused tarball left %v in blobs/", entries)
	}
}

// fakeGo stands in for go on PATH: "go env GOPROXY" answers the caller's
// GOPROXY, and "go mod download -json" records the environment it was
// given to $FAKE_GO_RECORD and hands out a zip that is not the toolchain,
// the way a proxy would if nothing checked it.
const fakeGo = `#!/bin/sh
case "$1 $2" in
"env GOPROXY") echo "${GOPROXY}" ;;
"mod download")
	env >"${FAKE_GO_RECORD}"
	zip="${GOMODCACHE}/cache/download/golang.org/toolchain/@v/forged.zip"
	mkdir -p "$(dirname "${zip}")"
	echo "not the toolchain" >"${zip}"
	printf '{\n\t"Path": "golang.org/toolchain",\n\t"Zip": "%s",\n\t"Sum": "h1:forged"\n}\n' "${zip}"
	;;
*) echo "fake go: unexpected $*" >&2; exit 2 ;;
esac
`

// TestFetchBlobsChecksTheToolchainAgainstTheChecksumDatabase: whatever the
// caller's environment says to skip the Go checksum database (GOSUMDB=off,
// GONOSUMDB, GOPRIVATE, GOINSECURE, GOFLAGS, a go env file), the go mod
// download that fetches the toolchain blob gets the settings that make go
// check it, keeps the caller's proxy, and the blob is still held to its
// sha256 in config/blobs.yml.
func TestFetchBlobsChecksTheToolchainAgainstTheChecksumDatabase(t *testing.T) {
	toolchain := releaseBlob(t, "golang/toolchain-")
	dir := fetchBlobsCheckout(t, toolchain, map[string][]byte{"bin/go": []byte(fakeGo)})
	record := filepath.Join(t.TempDir(), "go-env")
	const proxy = "https://goproxy.example.test"
	cmd := exec.Command("bash", "scripts/fetch-blobs.sh")
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "BLOBS_FROM", "PATH", "GOENV", "GOPROXY", "GOSUMDB", "GONOSUMDB",
		"GOPRIVATE", "GONOPROXY", "GOINSECURE", "GOFLAGS", "GO111MODULE", "GOWORK", "GOTOOLCHAIN", "FAKE_GO_RECORD"),
		"PATH="+filepath.Join(dir, "bin")+":/usr/bin:/bin",
		"FAKE_GO_RECORD="+record,
		"GOPROXY="+proxy,
		"GOSUMDB=off",
		"GONOSUMDB=*",
		"GOPRIVATE=*",
		"GONOPROXY=*",
		"GOINSECURE=*",
		"GOFLAGS=-insecure -mod=mod",
		"GOENV="+filepath.Join(dir, "goenv"),
		"GO111MODULE=off",
		"GOWORK="+filepath.Join(dir, "go.work"),
	)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("fetch-blobs.sh accepted a forged toolchain zip:\n%s", out)
	}
	if want := fmt.Sprintf("refusing blob %s: ", toolchain.path); !strings.Contains(string(out), want) {
		t.Errorf("fetch-blobs.sh on a forged toolchain zip said:\n%s\nwant %q, the sha256 pin", out, want)
	}
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("go mod download did not run: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for k, want := range map[string]string{
		"GOSUMDB":     "sum.golang.org",
		"GOENV":       "off",
		"GONOSUMDB":   "",
		"GOPRIVATE":   "",
		"GONOPROXY":   "",
		"GOINSECURE":  "",
		"GOFLAGS":     "-modcacherw",
		"GO111MODULE": "on",
		"GOWORK":      "off",
		"GOTOOLCHAIN": "local",
		"GOPROXY":     proxy,
	} {
		if v := got[k]; v != want {
			t.Errorf("go mod download ran with %s=%q, want %q", k, v, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "blobs", filepath.Dir(toolchain.path))); len(entries) > 0 {
		t.Errorf("the refused zip left %v in blobs/", entries)
	}
}

func TestGitignoreKeepsBuildOutputOut(t *testing.T) {
	lines := strings.Split(readFile(t, filepath.Join(repoRoot(t), ".gitignore")), "\n")
	for _, want := range []string{"/blobs/", "/dev_releases/", "/.dev_builds/", "/src/", "/config/private.yml", "/config/dev.yml"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".gitignore lacks %s", want)
		}
	}
	if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, ".final_builds") || l == "/releases/" }) {
		t.Error(".gitignore ignores .final_builds or releases/, where a final release is recorded")
	}
}

func withoutEnv(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// copyCheckout copies the files git would commit (tracked, or new and not
// ignored) from the repository to dir.
func copyCheckout(root, dir string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the working tree, or not a file
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(src, dst, st.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
