package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process in a process group of its own: stopping it stops
// what it forked too (trafgen forks a worker per CPU), and Ctrl-C on the
// terminal reaches only this program, which then stops its children in
// order.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	out     *lines
	done    chan struct{} // closed once Wait has returned
	waitErr error
}

// procSpec says how to start a proc.
type procSpec struct {
	name string
	args []string
	env  []string
	// stdout, if set, receives the process's standard output (a pcap
	// stream); otherwise it is read as lines, like stderr.
	stdout *os.File
	// log, if set, also receives every line.
	log io.Writer
}

func startProc(s procSpec) (*proc, error) {
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	cmd.Stderr = w
	cmd.Stdout = w
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	p := &proc{name: s.name, cmd: cmd, out: newLines(s.log), done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	w.Close()
	go p.out.read(r)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.pid(), sig)
}

// wait waits for the process to exit, at most timeout; then it kills the
// group and says so. If ctx ends first, it asks the group to end (SIGTERM)
// and kills it after 5 s.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		p.out.wait()
		return p.waitErr
	case <-ctx.Done():
		_ = p.stop(syscall.SIGTERM, 5*time.Second)
		return ctx.Err()
	case <-t.C:
		p.signal(syscall.SIGKILL)
		<-p.done
		p.out.wait()
		return fmt.Errorf("%s did not exit within %s; killed it", p.name, timeout)
	}
}

// stop asks the group to end with sig and waits for it, at most grace,
// then kills it.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		p.out.wait()
		return p.waitErr
	}
	p.signal(sig)
	return p.wait(context.Background(), grace)
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cpuUsed is the CPU time of an ended process and the children it
// waited for (wait4's rusage: the same utime and stime /proc/PID/stat
// shows while it runs, at a finer grain).
func (p *proc) cpuUsed() float64 {
	st := p.cmd.ProcessState
	if st == nil {
		return 0
	}
	return (st.UserTime() + st.SystemTime()).Seconds()
}

// fail is an error naming the process, with the end of its output.
func (p *proc) fail(format string, args ...any) error {
	return fmt.Errorf("%s: %s; its last output:\n%s", p.name, fmt.Sprintf(format, args...), p.out.tail(10))
}

// waitFor waits until a line matches re, at most timeout, and returns it
// with the moment it was read.
func (p *proc) waitFor(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (line, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := p.out.waitFor(ctx, re)
	if err != nil {
		return line{}, p.fail("no line matching %q (%v)", re, err)
	}
	return l, nil
}

// line is one line of output and when it was read.
type line struct {
	at   time.Time
	text string
}

// lines keeps everything a process printed, and wakes waiters on each
// new line.
type lines struct {
	log io.Writer

	mu      sync.Mutex
	all     []line
	eof     bool
	changed chan struct{}
	ended   chan struct{}
}

func newLines(log io.Writer) *lines {
	return &lines{log: log, changed: make(chan struct{}), ended: make(chan struct{})}
}

func (l *lines) read(r io.ReadCloser) {
	defer close(l.ended)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.add(line{at: time.Now(), text: sc.Text()})
	}
	l.mu.Lock()
	l.eof = true
	close(l.changed)
	l.mu.Unlock()
}

func (l *lines) add(ln line) {
	if l.log != nil {
		fmt.Fprintln(l.log, ln.text)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, ln)
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait waits for the end of the output, which follows the process's exit
// unless it left a child holding the pipe.
func (l *lines) wait() {
	select {
	case <-l.ended:
	case <-time.After(5 * time.Second):
	}
}

func (l *lines) waitFor(ctx context.Context, re *regexp.Regexp) (line, error) {
	for seen := 0; ; {
		l.mu.Lock()
		for _, ln := range l.all[seen:] {
			if re.MatchString(ln.text) {
				l.mu.Unlock()
				return ln, nil
			}
		}
		seen = len(l.all)
		eof, changed := l.eof, l.changed
		l.mu.Unlock()
		if eof {
			return line{}, errors.New("output ended")
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return line{}, ctx.Err()
		}
	}
}

// find returns the submatches of the last line matching re.
func (l *lines) find(re *regexp.Regexp) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.all) - 1; i >= 0; i-- {
		if m := re.FindStringSubmatch(l.all[i].text); m != nil {
			return m
		}
	}
	return nil
}

func (l *lines) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := max(0, len(l.all)-n)
	var b strings.Builder
	for _, ln := range l.all[start:] {
		b.WriteString("    " + ln.text + "\n")
	}
	return b.String()
}

// cpuSeconds is a running process's user+system CPU time so far, from
// /proc/PID/stat (in clock ticks of 10 ms).
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 || i+2 > len(data) {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(data[i+2:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: only %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const userHZ = 100 // the unit of /proc's times on Linux, whatever CONFIG_HZ is
	return float64(utime+stime) / userHZ, nil
}

// sleep waits d unless ctx ends first. It times measurement windows and
// traffic, never synchronisation.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// text is the whole output.
func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ln := range l.all {
		b.WriteString(ln.text + "\n")
	}
	return b.String()
}
