package boshrelease

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// vendoredGolang is the package that bosh vendor-package brings in from
// bosh-package-golang-release; the repository holds only its lock.
const vendoredGolang = "golang-1-linux"

// releaseVersion is what the staged release's binaries report.
const releaseVersion = "9.9.9-boshrelease-test"

func packageSpec(t *testing.T, name string) *PackageSpec {
	t.Helper()
	s, err := LoadPackageSpec(filepath.Join(repoRoot(t), "packages", name, "spec"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPackageSpecs(t *testing.T) {
	root := repoRoot(t)
	entries, err := os.ReadDir(filepath.Join(root, "packages"))
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]*PackageSpec{}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == vendoredGolang {
			continue
		}
		s := packageSpec(t, e.Name())
		if s.Name != e.Name() {
			t.Errorf("packages/%s/spec names the package %q", e.Name(), s.Name)
		}
		if !fileExists(filepath.Join(root, "packages", e.Name(), "packaging")) {
			t.Errorf("packages/%s has no packaging script", e.Name())
		}
		if len(s.Files) == 0 {
			t.Errorf("packages/%s lists no files", e.Name())
		}
		specs[s.Name] = s
	}
	for name, s := range specs {
		for _, dep := range s.Dependencies {
			if _, ok := specs[dep]; !ok && dep != vendoredGolang {
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
	if !needed[vendoredGolang] {
		t.Errorf("no package compiles with %s", vendoredGolang)
	}
}

// TestGolangIsVendoredNotFaked: golang-1-linux enters the repository only
// through bosh vendor-package, which writes its lock and final build
// together; neither may appear without the other.
func TestGolangIsVendoredNotFaked(t *testing.T) {
	root := repoRoot(t)
	lock := filepath.Join(root, "packages", vendoredGolang, "spec.lock")
	index := filepath.Join(root, ".final_builds/packages", vendoredGolang, "index.yml")
	switch {
	case fileExists(lock) && fileExists(index):
		data, err := LoadYAML(lock)
		if err != nil {
			t.Fatal(err)
		}
		m := asMap(t, data, "spec.lock")
		if m["name"] != vendoredGolang || !regexp.MustCompile(`^[0-9a-f]{40,64}$`).MatchString(fmt.Sprint(m["fingerprint"])) {
			t.Errorf("spec.lock %v", m)
		}
		if idx := readFile(t, index); !strings.Contains(idx, fmt.Sprint(m["fingerprint"])) {
			t.Errorf("%s does not hold the locked fingerprint %v", index, m["fingerprint"])
		}
	case fileExists(lock) || fileExists(index) || fileExists(filepath.Join(root, "packages", vendoredGolang)):
		t.Errorf("%s is half there: bosh vendor-package writes packages/%s/spec.lock and .final_builds/packages/%s/index.yml together", vendoredGolang, vendoredGolang, vendoredGolang)
	}
	readme := readFile(t, filepath.Join(root, "README.md"))
	if !strings.Contains(readme, "bosh vendor-package golang-1-linux") {
		t.Error("README.md does not document bosh vendor-package golang-1-linux")
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "scripts/build-release.sh")), "bosh vendor-package golang-1-linux") {
		t.Error("scripts/build-release.sh does not check for the vendored golang")
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
	for _, pkg := range []string{"libpcap", "pcap-server", "pcap-server-api"} {
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
	if want := "libpcap/libpcap_" + version[1] + ".orig.tar.gz"; !slices.Equal(packageSpec(t, "libpcap").Files, []string{want}) {
		t.Errorf("libpcap packaging unpacks %s, its spec lists %v", want, packageSpec(t, "libpcap").Files)
	}
	// When the tarball is at hand, it is the one declared.
	for _, b := range blobs {
		path := localBlob(t, b)
		if path == "" {
			continue
		}
		if err := checkBlob(path, b); err != nil {
			t.Error(err)
		}
	}
}

// localBlob finds a copy of the blob: blobs/ (where build-release.sh
// puts it) or LIBPCAP_TARBALL. "" when there is none.
func localBlob(t *testing.T, b blob) string {
	t.Helper()
	if p := filepath.Join(repoRoot(t), "blobs", b.path); fileExists(p) {
		return p
	}
	if p := os.Getenv("LIBPCAP_TARBALL"); p != "" && strings.HasPrefix(b.path, "libpcap/") {
		return p
	}
	return ""
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

func TestGitignoreKeepsBuildOutputOut(t *testing.T) {
	lines := strings.Split(readFile(t, filepath.Join(repoRoot(t), ".gitignore")), "\n")
	for _, want := range []string{"/blobs/", "/dev_releases/", "/.dev_builds/", "/src/", "/config/private.yml", "/config/dev.yml"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".gitignore lacks %s", want)
		}
	}
	if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, ".final_builds") }) {
		t.Error(".gitignore ignores .final_builds, where bosh vendor-package records golang-1-linux")
	}
}

// staged is a copy of the repository on which scripts/build-release.sh ran,
// shared by the tests that need the staged Go module.
var staged struct {
	once          sync.Once
	dir, out, err string
}

// stagedRelease copies the repository's files (tracked and new, as a
// commit would hold them) to a temporary directory and runs
// scripts/build-release.sh there, with a wrong libpcap tarball: the
// script stages and vendors the Go module, then refuses the blob.
func stagedRelease(t *testing.T) (dir, output string) {
	t.Helper()
	if testing.Short() {
		t.Skip("stages and vendors the Go module: not in -short")
	}
	root := repoRoot(t)
	staged.once.Do(func() {
		dir, err := os.MkdirTemp("", "boshrelease-stage-")
		if err != nil {
			staged.err = err.Error()
			return
		}
		staged.dir = dir
		if err := copyCheckout(root, dir); err != nil {
			staged.err = err.Error()
			return
		}
		fake := filepath.Join(dir, "not-libpcap.tar.gz")
		if err := os.WriteFile(fake, []byte("not the libpcap tarball"), 0o644); err != nil {
			staged.err = err.Error()
			return
		}
		cmd := exec.Command("bash", "scripts/build-release.sh")
		cmd.Dir = dir
		cmd.Env = append(withoutEnv(os.Environ(), "LIBPCAP_TARBALL", "VERSION"),
			"LIBPCAP_TARBALL="+fake, "VERSION="+releaseVersion, "PATH="+filepath.Dir(goTool(t))+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		staged.out = string(out)
		if err == nil {
			staged.err = "build-release.sh accepted a wrong libpcap tarball:\n" + staged.out
		}
	})
	if staged.err != "" {
		t.Fatal(staged.err)
	}
	return staged.dir, staged.out
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

func TestBuildReleaseScriptStagesTheModule(t *testing.T) {
	dir, out := stagedRelease(t)
	if !strings.Contains(out, "refusing the libpcap tarball") || !strings.Contains(out, "config/blobs.yml wants size 951869") {
		t.Errorf("build-release.sh on a wrong tarball said:\n%s", out)
	}
	if fileExists(filepath.Join(dir, "blobs/libpcap/libpcap_1.10.3.orig.tar.gz")) {
		t.Error("the refused tarball landed in blobs/")
	}
	stage := filepath.Join(dir, "src/pcap-server-release")
	if v := strings.TrimSpace(readFile(t, filepath.Join(stage, "VERSION"))); v != releaseVersion {
		t.Errorf("VERSION %q, want %q", v, releaseVersion)
	}
	if !fileExists(filepath.Join(stage, "vendor/modules.txt")) {
		t.Error("the staged module has no vendor/modules.txt")
	}
	_ = filepath.WalkDir(stage, func(path string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(path, "_test.go") || d.IsDir() && d.Name() == "testdata") && !strings.Contains(path, "/vendor/") {
			t.Errorf("staged %s: tests stay out of the release", path)
		}
		return nil
	})
}

// TestPackageFilesCoverTheBuild: every file the Go build of a package's
// binaries reads (go list -deps, in the staged module) is one its spec
// selects, and every glob selects something.
func TestPackageFilesCoverTheBuild(t *testing.T) {
	dir, _ := stagedRelease(t)
	src := filepath.Join(dir, "src")
	for pkg, mains := range map[string][]string{
		"pcap-server":     {"./cellagent/cmd/pcap-server"},
		"pcap-server-api": {"./proxy/cmd/pcap-server-api", "./cli/cmd/pcap-server-cli"},
	} {
		spec := packageSpec(t, pkg)
		files, err := PackageFiles(src, spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, glob := range spec.Files {
			if !slices.ContainsFunc(files, func(f string) bool { return MatchGlob(glob, f) }) {
				t.Errorf("package %s: %s selects nothing in the staged src/", pkg, glob)
			}
		}
		selected := map[string]bool{}
		for _, f := range files {
			selected[f] = true
		}
		args := append([]string{"list", "-mod=vendor", "-deps", "-f",
			`{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .CgoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .HFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .CFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`},
			mains...)
		cmd := exec.Command(goTool(t), args...)
		cmd.Dir = filepath.Join(src, "pcap-server-release")
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=vendor")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in the staged module: %v", err)
		}
		needed := 0
		for _, path := range strings.Fields(string(out)) {
			rel, err := filepath.Rel(src, path)
			if err != nil {
				t.Fatal(err)
			}
			needed++
			if !selected[filepath.ToSlash(rel)] {
				t.Errorf("package %s: the build reads %s, which the spec's files leave out", pkg, rel)
			}
		}
		for _, f := range []string{"pcap-server-release/go.mod", "pcap-server-release/go.sum", "pcap-server-release/VERSION", "pcap-server-release/vendor/modules.txt"} {
			if !selected[f] {
				t.Errorf("package %s leaves out %s", pkg, f)
			}
		}
		if needed < 20 {
			t.Errorf("package %s: go list named only %d files", pkg, needed)
		}
	}
}

// compilePackage runs a package's packaging script as a BOSH compile VM
// would: in a directory holding only the files its spec selects, with its
// dependencies under BOSH_PACKAGES_DIR and no Go on PATH but the one
// golang-1-linux's compile.env brings.
func compilePackage(t *testing.T, name, src, packagesDir string) string {
	t.Helper()
	spec := packageSpec(t, name)
	files, err := PackageFiles(src, spec)
	if err != nil {
		t.Fatal(err)
	}
	compile := t.TempDir()
	for _, f := range files {
		dst := filepath.Join(compile, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(filepath.Join(src, f), dst, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	install := filepath.Join(packagesDir, name)
	if err := os.MkdirAll(install, 0o755); err != nil {
		t.Fatal(err)
	}
	gocache, _ := exec.Command(goTool(t), "env", "GOCACHE").Output()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "packages", name, "packaging"))
	cmd.Dir = compile
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + t.TempDir(),
		"BOSH_COMPILE_TARGET=" + compile,
		"BOSH_INSTALL_TARGET=" + install,
		"BOSH_PACKAGES_DIR=" + packagesDir,
		// Not set on a compile VM (the packaging then uses its own
		// directory); here it spares rebuilding the standard library.
		"GOCACHE=" + strings.TrimSpace(string(gocache)),
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging %s: %v\n%s", name, err, out)
	}
	return install
}

// fakeGolangPackage lays out what golang-1-linux installs for packages
// that depend on it: bosh/compile.env pointing at a Go toolchain.
func fakeGolangPackage(t *testing.T, packagesDir string) {
	t.Helper()
	goroot, err := exec.Command(goTool(t), "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	env := fmt.Sprintf("export GOROOT=%s\nexport GOPATH=$PWD\nexport PATH=$GOROOT/bin:$GOPATH/bin:$PATH\n", strings.TrimSpace(string(goroot)))
	dir := filepath.Join(packagesDir, vendoredGolang, "bosh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compile.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAPIPackageCompilesAndServesTheCLI compiles the pcap-server-api
// package offline, checks the CLI binaries are what their names say, and
// has the compiled API serve them from the job's cli_dir.
func TestAPIPackageCompilesAndServesTheCLI(t *testing.T) {
	dir, _ := stagedRelease(t)
	packages := t.TempDir()
	fakeGolangPackage(t, packages)
	install := compilePackage(t, "pcap-server-api", filepath.Join(dir, "src"), packages)

	apiBin := filepath.Join(install, "bin/pcap-server-api")
	if out, err := exec.Command(apiBin, "-version").Output(); err != nil || strings.TrimSpace(string(out)) != releaseVersion {
		t.Errorf("pcap-server-api -version: %q, %v; want %s", out, err, releaseVersion)
	}
	entries, err := os.ReadDir(filepath.Join(install, "cli"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{
		"pcap-server-cli-linux-amd64", "pcap-server-cli-linux-arm64",
		"pcap-server-cli-mac-amd64", "pcap-server-cli-mac-arm64",
		"pcap-server-cli-windows-amd64.exe", "pcap-server-cli-windows-arm64.exe",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("cli/ holds %v, want %v", names, want)
	}
	for _, n := range names {
		if err := checkExecutableFormat(filepath.Join(install, "cli", n)); err != nil {
			t.Error(err)
		}
	}

	// The job's cli_dir is this package's cli/: the API lists and serves them.
	props := setDotted(setDotted(apiProperties(newTestPKI(t)), "listen.tls", nil), "log_level", "info")
	for _, key := range []string{"listen.address", "tunnel.address", "metrics.address"} {
		props = setDotted(props, key, freeAddress(t))
	}
	r := mustRenderJob(t, "pcap-server-api", props)
	cliDir := filepath.Join(r.root, "packages/pcap-server-api/cli")
	for _, n := range names {
		if err := copyFile(filepath.Join(install, "cli", n), filepath.Join(cliDir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline(t))
	defer cancel()
	api := startAPI(t, ctx, apiBin, r.path(configFile("pcap-server-api")))
	defer func() {
		cancel()
		<-api.exited
	}()
	base := "http://" + fmt.Sprint(props["listen"].(map[string]any)["address"])
	index := httpGet(t, base+"/cli/")
	for _, n := range names {
		if !strings.Contains(index, `href="`+n+`"`) {
			t.Errorf("the /cli/ index does not link %s:\n%s", n, index)
		}
	}
	if !strings.Contains(index, "/cli/pcap-server-cli-linux-amd64 -O pcap-cli") {
		t.Errorf("the /cli/ index does not show the install command:\n%s", index)
	}
	resp, err := http.Get(base + "/cli/pcap-server-cli-linux-amd64")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want, _ := os.ReadFile(filepath.Join(cliDir, "pcap-server-cli-linux-amd64")); resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Errorf("GET /cli/pcap-server-cli-linux-amd64: %s, %d bytes (want the %d of the file)", resp.Status, len(body), len(want))
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v: %s", url, resp.Status, err, body)
	}
	return string(body)
}

func checkExecutableFormat(path string) error {
	name := filepath.Base(path)
	parts := strings.Split(strings.TrimSuffix(name, ".exe"), "-")
	goos, goarch := parts[len(parts)-2], parts[len(parts)-1]
	var got string
	switch goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("%s: not ELF: %w", name, err)
		}
		defer f.Close()
		got = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
	case "mac":
		f, err := macho.Open(path)
		if err != nil {
			return fmt.Errorf("%s: not Mach-O: %w", name, err)
		}
		defer f.Close()
		got = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
	case "windows":
		f, err := pe.Open(path)
		if err != nil {
			return fmt.Errorf("%s: not PE: %w", name, err)
		}
		defer f.Close()
		got = map[uint16]string{pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64"}[f.Machine]
	default:
		return fmt.Errorf("%s: unknown OS %s", name, goos)
	}
	if got != goarch {
		return fmt.Errorf("%s is built for %q", name, got)
	}
	return nil
}

// TestAgentPackageLinksLibpcapStatically compiles the libpcap package
// from its blob and the pcap-server package against it, as a compile VM
// would, when the blob and libpcap's build tools are here.
func TestAgentPackageLinksLibpcapStatically(t *testing.T) {
	var tarball string
	for _, b := range releaseBlobs(t) {
		if strings.HasPrefix(b.path, "libpcap/") {
			if tarball = localBlob(t, b); tarball != "" {
				if err := checkBlob(tarball, b); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if tarball == "" {
		t.Skip("no libpcap tarball: run scripts/build-release.sh (puts it in blobs/) or set LIBPCAP_TARBALL")
	}
	for _, tool := range []string{"cc", "make", "flex", "bison"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the libpcap package needs it, as the stemcell has it", tool)
		}
	}
	dir, _ := stagedRelease(t)
	src := t.TempDir()
	if err := os.CopyFS(src, os.DirFS(filepath.Join(dir, "src"))); err != nil {
		t.Fatal(err)
	}
	blobDst := filepath.Join(src, packageSpec(t, "libpcap").Files[0])
	if err := os.MkdirAll(filepath.Dir(blobDst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(tarball, blobDst, 0o644); err != nil {
		t.Fatal(err)
	}
	packages := t.TempDir()
	fakeGolangPackage(t, packages)
	libpcap := compilePackage(t, "libpcap", src, packages)
	if !fileExists(filepath.Join(libpcap, "lib/libpcap.a")) || !fileExists(filepath.Join(libpcap, "include/pcap.h")) {
		t.Fatal("the libpcap package installs no lib/libpcap.a and include/pcap.h")
	}
	install := compilePackage(t, "pcap-server", src, packages)
	bin := filepath.Join(install, "bin/pcap-server")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("pcap-server has a dynamic loader: not statically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("pcap-server needs shared libraries %v", libs)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`libpcap_(\d+\.\d+\.\d+)\.orig`).FindStringSubmatch(tarball)
	if version != nil && !bytes.Contains(data, []byte("libpcap version "+version[1])) {
		t.Errorf("pcap-server does not carry libpcap %s", version[1])
	}
	if out, err := exec.Command(bin, "-version").Output(); err != nil || strings.TrimSpace(string(out)) != releaseVersion {
		t.Errorf("pcap-server -version: %q, %v", out, err)
	}
	r := mustRenderJob(t, "pcap-server", agentProperties(newTestPKI(t)))
	if out, err := checkConfig(t, bin, r.path(configFile("pcap-server"))); err != nil {
		t.Errorf("the compiled agent refuses the rendered config: %v\n%s", err, out)
	}
}
