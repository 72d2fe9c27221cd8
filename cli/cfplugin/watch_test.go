package cfplugin_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfplugin"
)

// watchRole makes the test binary play a part of TestWatchCLINoticesTheCLIsDeath.
const watchRole = "CFPLUGIN_WATCH_ROLE"

// watchHelper runs the role named in the environment and reports whether
// it did.
func watchHelper() bool {
	switch os.Getenv(watchRole) {
	case "cf":
		// The cf CLI: starts the plugin, then waits to be killed.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), watchRole+"=plugin")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Println("start plugin:", err)
			os.Exit(1)
		}
		fmt.Println("plugin", cmd.Process.Pid)
		_ = cmd.Wait()
		os.Exit(0)
	case "plugin":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		gone := cfplugin.NewConnection(1).WatchCLI(ctx)
		fmt.Println("watching")
		select {
		case <-gone:
			fmt.Println("gone while the cf CLI lived")
			os.Exit(1)
		case <-time.After(3 * cfplugin.WatchInterval):
			fmt.Println("still watching")
		}
		select {
		case <-gone:
			fmt.Println("gone")
		case <-ctx.Done():
			fmt.Println("never noticed")
		}
		os.Exit(0)
	}
	return false
}

// A kill of the cf CLI orphans its plugin without a signal; the plugin
// notices.
func TestWatchCLINoticesTheCLIsDeath(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cf := exec.Command(os.Args[0])
	cf.Env = append(os.Environ(), watchRole+"=cf")
	cf.Stdout, cf.Stderr = w, w
	if err := cf.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(r)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("the helpers said nothing for 20s")
			return ""
		}
	}
	first := next()
	pid, err := strconv.Atoi(strings.TrimPrefix(first, "plugin "))
	if err != nil {
		_ = cf.Process.Kill()
		_ = cf.Wait()
		t.Fatalf("cf helper: %q", first)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	for _, want := range []string{"watching", "still watching"} {
		if got := next(); got != want {
			_ = cf.Process.Kill()
			_ = cf.Wait()
			t.Fatalf("plugin said %q, want %q", got, want)
		}
	}
	if err := cf.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cf.Wait()
	if got := next(); got != "gone" {
		t.Fatalf("after the cf CLI was killed the plugin said %q", got)
	}
	// The plugin exits after saying so: the pipe ends.
	for range lines {
	}
}
