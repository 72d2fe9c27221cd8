package cfplugin

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

// WatchInterval is how often WatchCLI looks whether the cf CLI still runs.
const WatchInterval = 500 * time.Millisecond

// WatchCLI returns a channel that is closed once the cf CLI that started
// this plugin has exited, and never otherwise; the watch ends with ctx.
//
// The cf CLI dies without a word on Ctrl-C (it has no signal handler) and
// on kill, leaving the plugin orphaned. On Unix the plugin is the cf CLI's
// child, so the parent pid changing is the cheapest reliable sign: one
// getppid per look, no file descriptor, no traffic. Windows keeps the
// original parent pid of an orphan, so there the cf CLI's RPC port
// refusing connections is the sign.
func (c *Connection) WatchCLI(ctx context.Context) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if c.cliGone(ctx) {
				close(gone)
				return
			}
		}
	}()
	return gone
}

func (c *Connection) cliGone(ctx context.Context) bool {
	if runtime.GOOS != "windows" {
		return os.Getppid() != c.parent
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		// Only a refusal says the listener is gone; a timeout on a busy
		// machine does not.
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	conn.Close()
	return false
}
