// Package fuzzcorpus keeps the checked-in seed corpora of the fuzz targets
// (testdata/fuzz/FuzzX/) in step with the seeds written in code: a test
// calls Check, which fails when a seed file is missing or stale and
// rewrites them all when run with -update-corpus.
package fuzzcorpus

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update-corpus", false, "rewrite the checked-in fuzz seed corpora under testdata/fuzz")

// Check compares testdata/fuzz/<fuzzer>/seed-NN with the seeds, each a
// []byte argument or a string argument (one value per seed).
func Check(t *testing.T, fuzzer string, seeds ...any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzer)
	for i, seed := range seeds {
		path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
		var want []byte
		switch v := seed.(type) {
		case []byte:
			want = fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", v)
		case string:
			want = fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\n", v)
		default:
			t.Fatalf("seed %d of %s: unsupported type %T", i, fuzzer, seed)
		}
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale: run go test -run %s -update-corpus in %s", path, t.Name(), mustGetwd())
		}
	}
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
