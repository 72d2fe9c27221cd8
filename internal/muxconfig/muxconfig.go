// Package muxconfig holds the yamux settings both ends of the tunnel use;
// they must agree on the window, and both need the same keep-alive to find
// a dead peer in seconds.
package muxconfig

import (
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/yamux"
)

// StreamWindow is the per-stream receive window. yamux's 256 KiB default
// caps one stream at window/RTT, far below what a busy TLS capture needs;
// memory is committed only while a receiver lags, and the API reads
// every stream promptly.
const StreamWindow = 4 << 20

// Config returns the yamux configuration for a tunnel session. A dead peer
// is noticed after keepalive plus the write timeout.
func Config(keepalive time.Duration, logger *slog.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = keepalive
	c.ConnectionWriteTimeout = 5 * time.Second
	c.MaxStreamWindowSize = StreamWindow
	// A stream whose peer never answers our close is reset after this,
	// instead of yamux's five minutes.
	c.StreamCloseTimeout = 30 * time.Second
	c.StreamOpenTimeout = 15 * time.Second
	c.LogOutput = nil
	if logger == nil {
		c.LogOutput = io.Discard
	} else {
		c.Logger = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	return c
}
