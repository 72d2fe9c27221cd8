package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// A replaced file keeps its mode, and a symlink its target; nothing is
// left beside it; an update that declines writes nothing.
func TestWriteAndUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if err := Update(link, "config-*", func(b []byte) ([]byte, error) { return append(b, "+new"...), nil }); err != nil {
		t.Fatal(err)
	}
	if err := Update(link, "config-*", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	entries, _ := os.ReadDir(dir)
	if string(data) != "old+new" || st.Mode().Perm() != 0o600 || len(entries) != 2 {
		t.Fatalf("%q, mode %v, %d files", data, st.Mode(), len(entries))
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the symlink was replaced by a file")
	}
	if err := Write(filepath.Join(dir, "missing"), []byte("x"), "x-*"); err == nil {
		t.Fatal("wrote a file that did not exist")
	}
}
