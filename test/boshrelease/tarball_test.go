package boshrelease

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// releaseVersion is what the built release's binaries report.
const releaseVersion = "9.9.9-boshrelease-test"

// built is the release that scripts/build-release.sh made with the real
// bosh create-release from a fresh copy of the repository (the files git
// would commit, so no blobs/, src/ or dev builds), unpacked: release.MF,
// jobs/NAME/ and packages/NAME/ hold what each inner tarball holds.
var builtRelease struct {
	once     sync.Once
	dir      string // removed by TestMain
	tarball  string
	unpacked string
	copyRoot string // where the copy was built, which no file may name
	entries  map[string][]tarEntry
	err      string
}

type tarEntry struct {
	name     string
	typeflag byte
	mode     int64
}

func releaseTarball(t *testing.T) (unpacked string, entries map[string][]tarEntry) {
	t.Helper()
	bosh := boshCLI(t)
	if testing.Short() {
		t.Skip("builds the release tarball: not in -short")
	}
	blobs := localBlobs(t)
	root := repoRoot(t)
	b := &builtRelease
	b.once.Do(func() {
		fail := func(format string, args ...any) { b.err = fmt.Sprintf(format, args...) }
		var err error
		if b.dir, err = os.MkdirTemp("", "boshrelease-tarball-"); err != nil {
			fail("%v", err)
			return
		}
		b.copyRoot = filepath.Join(b.dir, "pcap-server-release")
		if err := copyCheckout(root, b.copyRoot); err != nil {
			fail("%v", err)
			return
		}
		b.tarball = filepath.Join(b.dir, "pcap-server.tgz")
		cmd := exec.Command("bash", "scripts/build-release.sh")
		cmd.Dir = b.copyRoot
		// A HOME of its own keeps bosh's blob cache (~/.bosh) out of the
		// user's; Go keeps its caches, so go mod vendor needs no download.
		goenv, err := exec.Command(goTool(t), "env", "GOMODCACHE", "GOCACHE").Output()
		if err != nil {
			fail("go env: %v", err)
			return
		}
		caches := strings.Fields(string(goenv))
		cmd.Env = append(withoutEnv(os.Environ(), "BLOBS_FROM", "VERSION", "RELEASE_TARBALL", "HOME", "GOMODCACHE", "GOCACHE"),
			"BLOBS_FROM="+blobs, "VERSION="+releaseVersion, "RELEASE_TARBALL="+b.tarball, "HOME="+filepath.Join(b.dir, "home"),
			"GOMODCACHE="+caches[0], "GOCACHE="+caches[1],
			"PATH="+filepath.Dir(goTool(t))+":"+filepath.Dir(bosh)+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			fail("scripts/build-release.sh on a fresh copy: %v\n%s", err, out)
			return
		}
		b.unpacked = filepath.Join(b.dir, "unpacked")
		b.entries = map[string][]tarEntry{}
		if b.entries["release"], err = untar(b.tarball, b.unpacked); err != nil {
			fail("%v", err)
			return
		}
		for _, kind := range []string{"jobs", "packages"} {
			inner, _ := filepath.Glob(filepath.Join(b.unpacked, kind, "*.tgz"))
			for _, tgz := range inner {
				name := strings.TrimSuffix(filepath.Base(tgz), ".tgz")
				if b.entries[kind+"/"+name], err = untar(tgz, filepath.Join(b.unpacked, kind, name)); err != nil {
					fail("%v", err)
					return
				}
			}
		}
	})
	if b.err != "" {
		t.Fatal(b.err)
	}
	return b.unpacked, b.entries
}

// untar lists a gzipped tarball's entries and unpacks it into dir with tar.
func untar(tgz, dir string) ([]tarEntry, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tgz, err)
	}
	var entries []tarEntry
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tgz, err)
		}
		entries = append(entries, tarEntry{name: h.Name, typeflag: h.Typeflag, mode: h.Mode})
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("tar", "-xzf", tgz, "-C", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("untar %s: %v: %s", tgz, err, out)
	}
	return entries, nil
}

// TestReleaseTarball inspects what bosh create-release built: the jobs and
// packages of the repository with their files, the blobs as declared, no
// test files, and nothing that names the machine it was built on.
func TestReleaseTarball(t *testing.T) {
	unpacked, entries := releaseTarball(t)
	root := repoRoot(t)

	var manifest struct {
		Name     string                  `yaml:"name"`
		Jobs     []struct{ Name string } `yaml:"jobs"`
		Packages []struct {
			Name         string   `yaml:"name"`
			Dependencies []string `yaml:"dependencies"`
		} `yaml:"packages"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(unpacked, "release.MF"))), &manifest); err != nil {
		t.Fatal(err)
	}
	if want := loadManifest(t, "config/final.yml")["name"]; manifest.Name != want {
		t.Errorf("release.MF names the release %q, config/final.yml %q", manifest.Name, want)
	}
	var jobs, packages []string
	for _, j := range manifest.Jobs {
		jobs = append(jobs, j.Name)
	}
	for _, p := range manifest.Packages {
		packages = append(packages, p.Name)
		want := packageSpec(t, p.Name).Dependencies
		if !slices.Equal(p.Dependencies, want) && (len(want) > 0 || len(p.Dependencies) > 0) {
			t.Errorf("release.MF: package %s depends on %v, its spec on %v", p.Name, p.Dependencies, want)
		}
	}
	sort.Strings(jobs)
	if !slices.Equal(jobs, releaseJobs) || !slices.Equal(packages, releasePackages(t)) {
		t.Errorf("the release holds jobs %v and packages %v; the repository %v and %v", jobs, packages, releaseJobs, releasePackages(t))
	}

	for _, job := range releaseJobs {
		dir := filepath.Join(unpacked, "jobs", job)
		spec := jobSpec(t, job)
		var mf struct {
			Templates  map[string]string `yaml:"templates"`
			Packages   []string          `yaml:"packages"`
			Properties map[string]any    `yaml:"properties"`
		}
		if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(dir, "job.MF"))), &mf); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(mf.Templates, spec.Templates) || !slices.Equal(mf.Packages, spec.Packages) || len(mf.Properties) != len(spec.Properties) {
			t.Errorf("job %s: job.MF has templates %v, packages %v, %d properties; the spec %v, %v, %d", job, mf.Templates, mf.Packages, len(mf.Properties), spec.Templates, spec.Packages, len(spec.Properties))
		}
		for src := range spec.Templates {
			if got, want := readFile(t, filepath.Join(dir, "templates", src)), readFile(t, filepath.Join(root, "jobs", job, "templates", src)); got != want {
				t.Errorf("job %s: templates/%s differs from the repository's", job, src)
			}
		}
		if got, want := readFile(t, filepath.Join(dir, "monit")), readFile(t, filepath.Join(root, "jobs", job, "monit")); got != want {
			t.Errorf("job %s: monit differs from the repository's", job)
		}
	}

	blobs := map[string]blob{}
	for _, b := range releaseBlobs(t) {
		blobs[b.path] = b
	}
	for _, pkg := range releasePackages(t) {
		dir := filepath.Join(unpacked, "packages", pkg)
		if got, want := readFile(t, filepath.Join(dir, "packaging")), readFile(t, filepath.Join(root, "packages", pkg, "packaging")); got != want {
			t.Errorf("package %s: packaging differs from the repository's", pkg)
		}
		for _, f := range packageSpec(t, pkg).Files {
			if b, ok := blobs[f]; ok {
				if err := checkBlob(filepath.Join(dir, f), b); err != nil {
					t.Errorf("package %s: %v", pkg, err)
				}
			}
		}
	}
	for _, pkg := range []string{"pcap-server", "pcap-server-api"} {
		module := filepath.Join(unpacked, "packages", pkg, "pcap-server-release")
		if v := strings.TrimSpace(readFile(t, filepath.Join(module, "VERSION"))); v != releaseVersion {
			t.Errorf("package %s: VERSION %q, want %q", pkg, v, releaseVersion)
		}
		for _, f := range []string{"go.mod", "go.sum", "vendor/modules.txt"} {
			if !fileExists(filepath.Join(module, f)) {
				t.Errorf("package %s lacks pcap-server-release/%s", pkg, f)
			}
		}
	}

	for archive, list := range entries {
		for _, e := range list {
			name := strings.TrimPrefix(e.name, "./")
			switch {
			case path.IsAbs(e.name) || slices.Contains(strings.Split(name, "/"), ".."):
				t.Errorf("%s: entry %q is not a path inside the archive", archive, e.name)
			case e.typeflag != tar.TypeReg && e.typeflag != tar.TypeDir:
				t.Errorf("%s: entry %q is neither a file nor a directory (type %q)", archive, e.name, e.typeflag)
			case strings.HasSuffix(name, "_test.go") || slices.Contains(strings.Split(name, "/"), "testdata"):
				t.Errorf("%s: %s is a test file: tests stay out of the release", archive, name)
			}
		}
	}
	// No file names the directory it was built in.
	_ = filepath.WalkDir(unpacked, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".tgz") || strings.Contains(p, "/blobs/") {
			return err
		}
		if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(builtRelease.copyRoot)) {
			t.Errorf("%s names the build directory %s", strings.TrimPrefix(p, unpacked+"/"), builtRelease.copyRoot)
		}
		return err
	})
}

// compilePackage runs a package's packaging script as a BOSH compile VM
// does: in a directory holding what the release tarball holds for the
// package, with the packages it depends on under BOSH_PACKAGES_DIR, and
// no Go on PATH but the one the golang package's compile.env brings.
func compilePackage(t *testing.T, unpacked, name, packagesDir string) string {
	t.Helper()
	compile := t.TempDir()
	if err := os.CopyFS(compile, os.DirFS(filepath.Join(unpacked, "packages", name))); err != nil {
		t.Fatal(err)
	}
	install := filepath.Join(packagesDir, name)
	if err := os.MkdirAll(install, 0o755); err != nil {
		t.Fatal(err)
	}
	gocache, _ := exec.Command(goTool(t), "env", "GOCACHE").Output()
	cmd := exec.Command("bash", "-e", "packaging")
	cmd.Dir = compile
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + t.TempDir(),
		"BOSH_COMPILE_TARGET=" + compile,
		"BOSH_INSTALL_TARGET=" + install,
		"BOSH_PACKAGES_DIR=" + packagesDir,
		// Not set on a compile VM (compile.env then picks one in the
		// compile directory); here it spares rebuilding the standard
		// library, which the same Go release built already.
		"GOCACHE=" + strings.TrimSpace(string(gocache)),
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging %s: %v\n%s", name, err, out)
	}
	return install
}

// TestPackagesCompileFromTheTarball compiles every package of the release
// tarball as a compile VM would, in dependency order: the Go toolchain from
// its blob, libpcap from its blob, then the agent (linked statically
// against that libpcap) and the API with the CLI for every platform. The
// binaries then run: the agent accepts its rendered configuration, the API
// serves the CLI downloads from the job's cli_dir.
func TestPackagesCompileFromTheTarball(t *testing.T) {
	unpacked, _ := releaseTarball(t)
	for _, tool := range []string{"cc", "make", "flex", "bison", "xz", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the packages need it, as the ubuntu-noble stemcell has it (scripts/install-deps.sh installs it)", tool)
		}
	}
	packages := t.TempDir()
	golang := compilePackage(t, unpacked, golangPackage, packages)
	out, err := exec.Command("bash", "-c", "source "+filepath.Join(golang, "bosh/compile.env")+" && command -v go && go version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), filepath.Join(golang, "go/bin/go")+"\n") {
		t.Fatalf("the golang package's compile.env: %v\n%s", err, out)
	}
	if !fileExists(filepath.Join(golang, "go/src/go.mod")) {
		t.Error("the golang package has no src/go.mod: the module zip's _go.mod files were not restored")
	}
	libpcap := compilePackage(t, unpacked, "libpcap", packages)
	if !fileExists(filepath.Join(libpcap, "lib/libpcap.a")) || !fileExists(filepath.Join(libpcap, "include/pcap.h")) {
		t.Fatal("the libpcap package installs no lib/libpcap.a and include/pcap.h")
	}

	t.Run("pcap-server", func(t *testing.T) {
		install := compilePackage(t, unpacked, "pcap-server", packages)
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
		version := regexp.MustCompile(`(?m)^version=(\S+)$`).FindStringSubmatch(readFile(t, filepath.Join(repoRoot(t), "packages/libpcap/packaging")))
		if version == nil || !bytes.Contains(data, []byte("libpcap version "+version[1])) {
			t.Errorf("pcap-server does not carry libpcap %v", version)
		}
		if out, err := exec.Command(bin, "-version").Output(); err != nil || strings.TrimSpace(string(out)) != releaseVersion {
			t.Errorf("pcap-server -version: %q, %v", out, err)
		}
		r := mustRenderJob(t, "pcap-server", agentProperties(newTestPKI(t)))
		if out, err := checkConfig(t, bin, r.path(configFile("pcap-server"))); err != nil {
			t.Errorf("the compiled agent refuses the rendered config: %v\n%s", err, out)
		}
	})

	t.Run("pcap-server-api", func(t *testing.T) {
		install := compilePackage(t, unpacked, "pcap-server-api", packages)
		checkAPIPackage(t, install)
	})
}

// checkAPIPackage checks the compiled API package: its version, the CLI
// binaries are what their names say, and the API serves them from the
// job's cli_dir.
func checkAPIPackage(t *testing.T, install string) {
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
