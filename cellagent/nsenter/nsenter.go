// Package nsenter runs a function inside another network namespace.
//
// setns(2) changes the namespace of one thread only, and the Go scheduler
// moves goroutines between threads, so the switch happens on a dedicated
// goroutine locked to its thread, which switches back as soon as the
// function returns. Sockets keep the namespace they were created in, so a
// capture handle opened inside stays inside after the switch back.
package nsenter

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// ErrOwnNamespace is returned when the target is the caller's own network
// namespace: for the agent that is the cell's host namespace, which it
// must not capture.
var ErrOwnNamespace = errors.New("network namespace is the agent's own (host) namespace")

// Do runs fn with the calling thread inside the network namespace at path
// (for example /var/run/netns/NAME or /proc/PID/ns/net) and returns its
// error. Unless allowOwn is set it refuses a path that names the caller's
// own namespace.
func Do(path string, allowOwn bool, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// If switching back fails, this goroutine exits without unlocking,
		// and the runtime then terminates the thread rather than reuse it
		// in the wrong namespace.
		runtime.LockOSThread()
		restored, err := run(path, allowOwn, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func run(path string, allowOwn bool, fn func() error) (restored bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return true, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	if target.Equal(orig) {
		if !allowOwn {
			return true, fmt.Errorf("%s: %w", path, ErrOwnNamespace)
		}
		return true, fn()
	}
	if err := netns.Set(target); err != nil {
		return true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return false, fmt.Errorf("return from network namespace %s: %w", path, err)
	}
	return true, fnErr
}
