package pcapcmd

import (
	"os"

	"golang.org/x/sys/unix"
)

// pipeSize is what the CLI asks for its output pipe: Linux's default
// unprivileged maximum (fs.pipe-max-size).
const pipeSize = 1 << 20

// growPipe enlarges the pipe f writes to, if it is one. A pipe holds 64
// KiB by default: a bulk capture then fills it with every write and the
// copier sleeps and wakes, with its reader, once per 64 KiB (most of
// the CLI's time in a TCP capture into Wireshark or a script). A larger
// pipe lets each side move a whole write at once. It is best effort: the
// kernel may refuse (the user's pipe memory is spent), and the capture
// is as correct either way.
func growPipe(f *os.File) {
	// Control, not Fd: Fd would put a non-blocking descriptor back into
	// blocking mode.
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return
		}
		if size, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && size < pipeSize {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
		}
	})
}
