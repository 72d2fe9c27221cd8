// Package logging sets up the binaries' structured logs: JSON lines on
// stderr, one object per event, so that a capture can be followed across
// the API and the agents by its capture_id field.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// ParseLevel parses debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown level %q: want debug, info, warn or error", s)
}

// New returns a JSON logger at level, tagged with the component.
func New(w io.Writer, level, component string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("component", component), nil
}
