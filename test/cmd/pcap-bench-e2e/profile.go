package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// namedPID is one process of a capture path.
type namedPID struct {
	name string
	pid  int
}

// profiler records where each process of a capture spends its CPU, with
// perf (sampling, call graphs), for a window while the traffic flows, and
// writes perf's reports beside the recordings: NAME.perf.data, and
// NAME.self.txt (by function, own time) and NAME.children.txt (with what
// it calls). perf's sampling costs the profiled processes a little; the
// profiled run's CPU figures are the report's like any other.
type profiler struct {
	dir    string
	path   string // the capture path, for the file names
	procs  []namedPID
	window time.Duration
	perfs  []*proc
	files  []string
}

func (p *profiler) start() error {
	if _, err := exec.LookPath("perf"); err != nil {
		return errors.New("perf is not installed (scripts/bench-e2e.sh installs linux-perf when PROFILE is set)")
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	secs := strconv.FormatFloat(p.window.Seconds(), 'f', 1, 64)
	for _, np := range p.procs {
		file := filepath.Join(p.dir, fileName(p.path+"-"+np.name)+".perf.data")
		pr, err := startProc(procSpec{name: "perf record " + np.name, args: []string{
			"perf", "record", "--quiet", "-g", "-F", "999", "-p", strconv.Itoa(np.pid), "-o", file, "--", "sleep", secs}})
		if err != nil {
			p.stop()
			return err
		}
		p.perfs = append(p.perfs, pr)
		p.files = append(p.files, file)
	}
	progress("  profiling %d processes of %s for %s into %s", len(p.procs), p.path, p.window, p.dir)
	return nil
}

func (p *profiler) stop() {
	for _, pr := range p.perfs {
		_ = pr.stop(syscall.SIGINT, 10*time.Second)
	}
}

// report waits for the recordings and writes perf's reports of each.
func (p *profiler) report(ctx context.Context) error {
	var errs []error
	for i, pr := range p.perfs {
		if err := pr.wait(ctx, p.window+30*time.Second); err != nil {
			errs = append(errs, pr.fail("%v", err))
			continue
		}
		base := strings.TrimSuffix(p.files[i], ".perf.data")
		for _, r := range []struct {
			suffix string
			args   []string
		}{
			{".self.txt", []string{"--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.3"}},
			{".children.txt", []string{"--children", "--sort", "sym", "-g", "none", "--percent-limit", "2"}},
		} {
			args := append([]string{"report", "--stdio", "-i", p.files[i]}, r.args...)
			out, err := exec.CommandContext(ctx, "perf", args...).Output()
			if err != nil {
				errs = append(errs, fmt.Errorf("perf %s: %w", strings.Join(args, " "), err))
				continue
			}
			if err := os.WriteFile(base+r.suffix, out, 0o644); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// fileName makes a path's and process's name a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '/' {
			return '-'
		}
		return r
	}, strings.ToLower(s))
}
