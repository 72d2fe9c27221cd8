package boshrelease

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// boshCLI is the real bosh CLI on PATH (.ci/run puts ../shared/bin there).
// Without it the tests that need it skip and say why.
func boshCLI(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("bosh")
	if err != nil {
		t.Skip("the bosh CLI is not on PATH (.ci/run adds ../shared/bin, where the project keeps it): skipping what needs bosh int or bosh create-release")
	}
	return path
}

// cfDeploymentDir holds cf-deployment's manifest and some of its ops files:
// CF_DEPLOYMENT_DIR, or shared/cf-deployment beside the repository.
func cfDeploymentDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CF_DEPLOYMENT_DIR")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(repoRoot(t)), "shared", "cf-deployment")
	}
	if !fileExists(filepath.Join(dir, cfManifest)) {
		t.Skipf("no %s in %s (set CF_DEPLOYMENT_DIR to a directory holding cf-deployment's manifest and ops files)", cfManifest, dir)
	}
	return dir
}

// cfManifest is cf-deployment v58's cf-deployment.yml, under the name the
// project keeps it.
const cfManifest = "cf-deployment-v58.yml"

// boshInt runs bosh interpolate with args and decodes what it prints.
func boshInt(t testing.TB, args ...string) map[string]any {
	t.Helper()
	out, err := boshIntOutput(t, args...)
	if err != nil {
		t.Fatalf("bosh int %v: %v", args, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("bosh int %v printed no manifest: %v", args, err)
	}
	return doc
}

// boshIntOutput runs bosh interpolate; the error carries what bosh said.
func boshIntOutput(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(boshCLI(t), append([]string{"interpolate"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &boshError{err: err, output: string(out) + stderr.String()}
	}
	return out, nil
}

type boshError struct {
	err    error
	output string
}

func (e *boshError) Error() string { return e.err.Error() + ": " + e.output }

// writeYAML writes doc to a file in a temporary directory.
func writeYAML(t testing.TB, name string, doc any) string {
	t.Helper()
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
