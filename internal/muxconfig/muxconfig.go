// Package muxconfig holds the yamux settings of both ends of the tunnel.
// Each end's MaxStreamWindowSize is what it lets its peer send on a stream
// before reading: the agent's bounds what the API sends it (requests and
// stops), the API's what an agent may have in flight per capture stream.
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

// StreamWindow is the agent's per-stream receive window.
const StreamWindow = 4 << 20

// APIStreamWindow is the API's per-stream receive window: what an agent
// may send on a stream before the API's reader has taken it. It does not
// bound the API's memory: the API passes yamux a capture stream's data
// only as it arrives and fits in what its capture may hold unread
// (proxy/tunnel's Unread, 256 KiB for all its streams), and holds the
// rest back in the connection. What the window sets is how often the API
// sends a window update and the agent's writer waits for one: at yamux's
// minimum (256 KiB) bulk captures paid for it in wakeups on both sides,
// about a quarter of the path's CPU per captured byte (docs/PERFORMANCE.md).
const APIStreamWindow = 1 << 20

// StreamCloseTimeout is how long a stream whose peer never answers our
// close lives on before it is reset, instead of yamux's five minutes.
const StreamCloseTimeout = 30 * time.Second

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
	c.StreamCloseTimeout = StreamCloseTimeout
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
	c.MaxStreamWindowSize = APIStreamWindow
	return c
}
