package pcapcmd

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func pipeSizeOf(t *testing.T, f *os.File) int {
	t.Helper()
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	size := -1
	if err := raw.Control(func(fd uintptr) { size, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return size
}

func TestOutputToAPipeGrowsThePipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if got := pipeSizeOf(t, w); got >= pipeSize {
		t.Skipf("pipes here already hold %d bytes: nothing to grow", got)
	}
	out, closeOut, err := openOutput("-", false, w)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOut()
	if out != w {
		t.Fatalf("output is %v, want stdout", out)
	}
	if got := pipeSizeOf(t, w); got != pipeSize {
		t.Fatalf("pipe holds %d bytes after openOutput, want %d", got, pipeSize)
	}
	// os.Pipe's ends are non-blocking, in Go's poller; they stay so.
	raw, _ := w.SyscallConn()
	flags := 0
	_ = raw.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("openOutput made the pipe blocking")
	}
}

func TestOutputToAFileLeavesItAlone(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	growPipe(f) // not a pipe: nothing to do, nothing to fail
	if _, err := f.WriteString("still writable"); err != nil {
		t.Fatal(err)
	}
}
