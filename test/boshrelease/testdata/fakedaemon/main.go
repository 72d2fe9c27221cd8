// Command fakedaemon stands in for a job's binary when a test runs the
// job's ctl script: it reports "started ARGS" and, on SIGTERM, "term" to
// the file named by FAKE_EVENTS (a FIFO the test reads), then exits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	events, err := os.OpenFile(os.Getenv("FAKE_EVENTS"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(events, "started %d %s\n", os.Getpid(), strings.Join(os.Args[1:], " "))
	<-term
	fmt.Fprintln(events, "term")
}
