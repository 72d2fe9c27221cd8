package garden

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// Where a container's network namespace was found, in the order they are
// tried.
const (
	SourceBindMount = "garden-cni bind mount"
	SourceRuncNetns = "runc state namespace_paths.NEWNET"
	SourceRuncInit  = "runc state init_process_pid"
)

const (
	// maxStateFile bounds a runc state.json: it holds the container's
	// whole config (mounts, seccomp profile), tens of kilobytes.
	maxStateFile = 4 << 20
	// maxPID is the kernel's PID_MAX_LIMIT.
	maxPID = 1 << 22

	nsfsMagic   = 0x6e736673 // NSFS_MAGIC: the filesystem of namespace files
	nsGetNSType = 0xb703     // NS_GET_NSTYPE ioctl
)

// nsID identifies a namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

var errNotNamespace = errors.New("not a network namespace")

// inspectNetns checks that path names a network namespace and returns its
// identity. Namespace files look like regular files; anything else (a
// device, a FIFO) is refused before it is opened, as opening some devices
// acts on them.
func inspectNetns(path string) (nsID, error) {
	var pre syscall.Stat_t
	if err := syscall.Stat(path, &pre); err != nil {
		return nsID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if pre.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nsID{}, errNotNamespace
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nsID{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var sfs syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &sfs); err != nil {
		return nsID{}, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	// A file left behind where a bind mount used to be is a plain file
	// on the underlying filesystem.
	if uint32(sfs.Type) != nsfsMagic {
		return nsID{}, errNotNamespace
	}
	// Kernels before 4.11 lack the ioctl; there any nsfs file passes.
	typ, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), nsGetNSType, 0)
	if errno == 0 && typ != syscall.CLONE_NEWNET {
		return nsID{}, fmt.Errorf("%w: a namespace of another type", errNotNamespace)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nsID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return nsID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// ownNetns identifies the agent's own network namespace, the cell's host
// namespace. The thread is locked so that the namespace read is that of
// this goroutine's thread and not of one another goroutine has switched.
func ownNetns() (nsID, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netns.Get()
	if err != nil {
		return nsID{}, fmt.Errorf("open the agent's network namespace: %w", err)
	}
	defer h.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(h), &st); err != nil {
		return nsID{}, fmt.Errorf("stat the agent's network namespace: %w", err)
	}
	return nsID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// initNetns identifies the namespace of PID 1, the cell's host namespace
// even if the agent itself were started in another one. ok is false when
// it cannot be read (a PID namespace of its own).
func initNetns() (nsID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/1/ns/net", &st); err != nil {
		return nsID{}, false
	}
	return nsID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// runcState is what the agent reads of runc's state.json.
type runcState struct {
	InitPID int
	// InitStart is the init process's start time in clock ticks since
	// boot (field 22 of /proc/PID/stat); 0 when unknown.
	InitStart uint64
	// NetnsPath is namespace_paths.NEWNET, empty when absent.
	NetnsPath string
}

// parseRuncState reads a runc state.json. init_process_start is a number
// in runc 1.x and a decimal string in older releases; both are accepted.
func parseRuncState(data []byte) (runcState, error) {
	var raw struct {
		InitPID        int               `json:"init_process_pid"`
		InitStart      json.RawMessage   `json:"init_process_start"`
		NamespacePaths map[string]string `json:"namespace_paths"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return runcState{}, fmt.Errorf("decode: %w", err)
	}
	st := runcState{InitPID: raw.InitPID, NetnsPath: raw.NamespacePaths["NEWNET"]}
	if st.InitPID < 0 || st.InitPID > maxPID {
		return runcState{}, fmt.Errorf("init_process_pid %d is not a PID", st.InitPID)
	}
	if st.NetnsPath != "" && (!filepath.IsAbs(st.NetnsPath) || strings.ContainsRune(st.NetnsPath, 0)) {
		return runcState{}, fmt.Errorf("namespace_paths.NEWNET %q is not an absolute path", st.NetnsPath)
	}
	if st.InitPID == 0 && st.NetnsPath == "" {
		return runcState{}, errors.New("neither init_process_pid nor namespace_paths.NEWNET is set")
	}
	if start := bytes.TrimSpace(raw.InitStart); len(start) > 0 && !bytes.Equal(start, []byte("null")) {
		var s string
		if start[0] == '"' {
			if err := json.Unmarshal(start, &s); err != nil {
				return runcState{}, fmt.Errorf("init_process_start: %w", err)
			}
		} else {
			s = string(start)
		}
		if s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return runcState{}, fmt.Errorf("init_process_start %q is not a tick count", s)
			}
			st.InitStart = n
		}
	}
	return st, nil
}

// parseProcStat returns the start time (field 22) of a /proc/PID/stat
// line. The command name (field 2) may hold spaces and parentheses, so
// fields are counted from its last closing parenthesis.
func parseProcStat(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	// After the name: state (field 3) ... starttime (field 22).
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 20", len(fields))
	}
	n, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("start time %q: %w", fields[19], err)
	}
	return n, nil
}

func procStartTime(pid int) (uint64, error) {
	data, err := readBounded(fmt.Sprintf("/proc/%d/stat", pid), 4096)
	if err != nil {
		return 0, err
	}
	return parseProcStat(data)
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// NoNetnsError says that no source gave a network namespace for a
// container; Tried lists each path with what was wrong with it.
type NoNetnsError struct {
	Handle string
	Tried  []string
}

func (e *NoNetnsError) Error() string {
	return fmt.Sprintf("no network namespace found for container %s: tried %s", e.Handle, strings.Join(e.Tried, "; "))
}

// HostNetnsError says that a container's namespace path names the agent's
// own (the host's) network namespace.
type HostNetnsError struct {
	Handle, Path, Source string
}

func (e *HostNetnsError) Error() string {
	return fmt.Sprintf("the network namespace of container %s, %s (from the %s), is the cell's host namespace", e.Handle, e.Path, e.Source)
}

// netnsFinder finds a container's network namespace on the cell.
type netnsFinder struct {
	netnsDir  string
	runcRoots []string
}

// find returns the path of handle's network namespace and its source. The
// first source that names an existing network namespace decides; if that
// is the host's own, find refuses rather than look further.
func (f netnsFinder) find(handle string) (path, source string, err error) {
	host, err := ownNetns()
	if err != nil {
		return "", "", err
	}
	initNS, haveInit := initNetns()
	var tried []string
	note := func(label, problem string) { tried = append(tried, label+" ("+problem+")") }
	// check reports whether path is a usable namespace; a host namespace
	// is an error. label names the path in the list of what was tried.
	check := func(path, source, label string) (bool, error) {
		id, err := inspectNetns(path)
		if err != nil {
			note(label, describe(err))
			return false, nil
		}
		if id == host || (haveInit && id == initNS) {
			return false, &HostNetnsError{Handle: handle, Path: path, Source: source}
		}
		return true, nil
	}

	if f.netnsDir != "" {
		p := filepath.Join(f.netnsDir, handle)
		if ok, err := check(p, SourceBindMount, p); ok || err != nil {
			return p, SourceBindMount, err
		}
	}
	type candidate struct{ path, source string }
	for _, root := range f.runcRoots {
		st, statePath, err := readRuncState(root, handle)
		if err != nil {
			note(statePath, describe(err))
			continue
		}
		var candidates []candidate
		if st.NetnsPath != "" {
			candidates = append(candidates, candidate{st.NetnsPath, SourceRuncNetns})
		}
		initProc := ""
		if st.InitPID > 0 {
			initProc = fmt.Sprintf("/proc/%d/", st.InitPID)
			if st.NetnsPath != initProc+"ns/net" {
				candidates = append(candidates, candidate{initProc + "ns/net", SourceRuncInit})
			}
		}
		initGone := ""
		if initProc != "" && st.InitStart != 0 {
			if start, err := procStartTime(st.InitPID); err != nil {
				initGone = fmt.Sprintf("init process %d has exited", st.InitPID)
			} else if start != st.InitStart {
				initGone = fmt.Sprintf("init process %d has exited and its PID belongs to another process", st.InitPID)
			}
		}
		for _, c := range candidates {
			label := c.path + " named by " + statePath
			// A path through a reused PID leads into another process's
			// namespace: never look at it.
			if initGone != "" && strings.HasPrefix(c.path, initProc) {
				note(label, initGone)
				continue
			}
			if ok, err := check(c.path, c.source, label); ok || err != nil {
				return c.path, c.source, err
			}
		}
	}
	return "", "", &NoNetnsError{Handle: handle, Tried: tried}
}

// readRuncState reads root/handle/state.json and returns its path too.
func readRuncState(root, handle string) (runcState, string, error) {
	statePath := filepath.Join(root, handle, "state.json")
	data, err := readBounded(statePath, maxStateFile)
	if err != nil {
		return runcState{}, statePath, err
	}
	st, err := parseRuncState(data)
	if err != nil {
		return runcState{}, statePath, fmt.Errorf("unusable: %w", err)
	}
	return st, statePath, nil
}

// initProcess is the container's init process from the first runc root
// whose state names one.
func (f netnsFinder) initProcess(handle string) (st runcState, statePath string, ok bool) {
	for _, root := range f.runcRoots {
		st, statePath, err := readRuncState(root, handle)
		if err == nil && st.InitPID > 0 {
			return st, statePath, true
		}
	}
	return runcState{}, "", false
}

// describe says briefly what is wrong with a path.
func describe(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "absent"
	case errors.Is(err, errNotNamespace):
		return err.Error()
	case errors.As(err, &pe):
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
