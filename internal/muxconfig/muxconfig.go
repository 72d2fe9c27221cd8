// Package muxconfig holds the yamux settings both ends of the tunnel use;
// they must agree on the window.
//
// yamux's own keep-alive is off on both ends: each session has exactly one
// ping flow, the agent's (which also measures the round trip), and the API
// pings only an agent it has not heard from for a while. See the tunnel
// packages of both sides.
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

// WriteTimeout bounds a frame's wait to be written, and a ping's wait for
// its answer: a peer that answers no ping within it is gone.
const WriteTimeout = 5 * time.Second

// apiAcceptBacklog is the API's accept backlog. Agents open one stream,
// the control stream; on the API's end yamux also counts against it the
// capture streams the API opened and the agent has not acknowledged yet,
// a few per agent (limits.captures_per_agent). The default, 256, costs
// 2 KiB per session, a noticeable part of an idle session.
const apiAcceptBacklog = 64

// Config returns the yamux configuration for the agent's end of a tunnel
// session. One config may serve every session of a process: yamux only
// reads it.
func Config(logger *slog.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = WriteTimeout
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

// APIConfig is Config for the API's end.
func APIConfig(logger *slog.Logger) *yamux.Config {
	c := Config(logger)
	c.AcceptBacklog = apiAcceptBacklog
	return c
}
