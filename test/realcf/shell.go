package realcf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Shell is an interactive bash on a terminal of its own, with job control:
// a command typed into it runs as the terminal's foreground job, and a
// Ctrl-C typed reaches that job's process group, as at a user's terminal.
// `cf` in it is this CF.
type Shell struct {
	tb  testing.TB
	cmd *exec.Cmd
	tty *os.File

	mu      sync.Mutex
	out     []byte // everything the terminal showed, cleaned
	cursor  int    // Expect looks from here on
	changed chan struct{}
	ended   bool
}

// Prompt is the shell's prompt.
const Prompt = "realcf$ "

// Shell starts the shell with Env(extra...).
func (cf *CF) Shell(tb testing.TB, extra ...string) *Shell {
	tb.Helper()
	cmd := exec.Command("env", "--default-signal=INT,TERM,QUIT,HUP", "bash", "--norc", "--noprofile", "-i")
	cmd.Env = Env(append([]string{"PS1=" + Prompt, "PATH=" + filepath.Dir(cf.Wrapper) + ":" + os.Getenv("PATH"), "TERM=dumb"}, extra...)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 400})
	if err != nil {
		tb.Fatalf("start a shell on a pty: %v", err)
	}
	s := &Shell{tb: tb, cmd: cmd, tty: tty, changed: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		s.read()
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		tty.Close()
		<-read
	})
	s.Expect(regexp.MustCompile(regexp.QuoteMeta(Prompt)), 10*time.Second)
	return s
}

var terminalEscapes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\r`)

func (s *Shell) read() {
	buf := make([]byte, 4096)
	for {
		n, err := s.tty.Read(buf)
		s.mu.Lock()
		s.out = append(s.out, buf[:n]...)
		if err != nil {
			s.ended = true
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Type types text into the terminal.
func (s *Shell) Type(text string) {
	s.tb.Helper()
	if _, err := s.tty.Write([]byte(text)); err != nil {
		s.tb.Fatalf("type %q: %v", text, err)
	}
}

// CtrlC types Ctrl-C.
func (s *Shell) CtrlC() { s.Type("\x03") }

// Expect waits until the terminal shows text matching re after what the
// last Expect matched, and returns the match.
func (s *Shell) Expect(re *regexp.Regexp, within time.Duration) string {
	s.tb.Helper()
	timeout := time.After(within)
	for {
		s.mu.Lock()
		screen := terminalEscapes.ReplaceAll(s.out, nil)
		rest := screen[min(s.cursor, len(screen)):]
		loc := re.FindIndex(rest)
		if loc != nil {
			s.cursor += loc[1]
		}
		changed, ended := s.changed, s.ended
		s.mu.Unlock()
		if loc != nil {
			return string(rest[loc[0]:loc[1]])
		}
		if ended {
			s.tb.Fatalf("the terminal closed before it showed %s:\n%s", re, screen)
		}
		select {
		case <-changed:
		case <-timeout:
			s.tb.Fatalf("the terminal did not show %s within %s:\n%s", re, within, screen)
		}
	}
}

// Screen is everything the terminal showed so far.
func (s *Shell) Screen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(bytes.Clone(terminalEscapes.ReplaceAll(s.out, nil)))
}
