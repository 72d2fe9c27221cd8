package pcapcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/pcapstream"
)

// endText says in words why a capture ended, and whether that is a
// normal end (exit 0).
var endText = map[string]struct {
	text   string
	normal bool
}{
	"requested":      {"stopped on request", true},
	"duration":       {"duration reached", true},
	"packets":        {"packet count reached", true},
	"max_bytes":      {"the server's size limit reached", true},
	"client_gone":    {"stopped", true},
	"agent_lost":     {"lost the connection to the cell's agent", false},
	"agent_draining": {"the cell's agent shut down", false},
	"api_draining":   {"the API shut down", false},
	"container_gone": {"the app instance went away", false},
	"error":          {"capture error on the cell", false},
}

// summarize prints the summary line and picks the exit code. ifDrops are
// the drops the pcapng statistics blocks reported by interface.
func summarize(ctx context.Context, c Capture, env Env, prog pcapstream.Progress, ifDrops []pcapstream.InterfaceDrops, trailer http.Header, copyErr error, elapsed time.Duration) (int, error) {
	reason := trailer.Get("Pcap-End-Reason")
	var why string
	code := ExitOK
	switch {
	case ctx.Err() != nil:
		why = "stopped (interrupted)"
	case errors.As(copyErr, new(cutError)):
		why = copyErr.Error()
		code = ExitError
	case copyErr != nil && !errors.Is(copyErr, io.EOF):
		why = fmt.Sprintf("the stream broke: %v", copyErr)
		code = ExitError
	case reason == "":
		why = "the API ended the stream without saying why"
		code = ExitError
	default:
		e, ok := endText[reason]
		if !ok {
			e.text = reason
		}
		why = e.text
		if !e.normal {
			code = ExitError
		}
	}
	dropped := "?"
	var details []string
	if d := trailer.Get("Pcap-Dropped"); d != "" {
		dropped = dropTotal(d)
		if detail := trailer.Get("Pcap-Dropped-Detail"); detail != "" {
			details = append(details, detail)
		}
		details = append(details, unknownCounts(trailer.Get("Pcap-Counts-Unknown"))...)
	} else if prog.Dropped > 0 {
		dropped = strconv.FormatUint(prog.Dropped, 10)
	}
	if c.Devices > 1 && len(ifDrops) > 0 {
		// Which device lost them: the capture of lo may drop while eth0's
		// does not.
		details = append(details, interfaceDrops(ifDrops))
	}
	if len(details) > 0 {
		dropped += " (" + strings.Join(details, "; ") + ")"
	}
	fmt.Fprintf(env.Stderr, "%d packets, %s written to %s in %s; dropped: %s; ended: %s\n",
		prog.Packets, humanBytes(prog.Bytes), displayName(c.Output), elapsed.Round(time.Second), dropped, why)
	return code, nil
}

// maxDropInterfaces bounds the interfaces the summary names.
const maxDropInterfaces = 4

// interfaceDrops says where drops happened: "my-app/0/lo: 12, ...".
func interfaceDrops(drops []pcapstream.InterfaceDrops) string {
	var parts []string
	for i, d := range drops {
		if i == maxDropInterfaces {
			parts = append(parts, fmt.Sprintf("%d more", len(drops)-i))
			break
		}
		name := d.Name
		if name == "" {
			name = fmt.Sprintf("interface %d", d.ID)
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, d.Dropped))
	}
	return strings.Join(parts, ", ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// printer owns stderr's progress line.
type printer struct {
	w        io.Writer
	mu       sync.Mutex
	progress bool // a progress line is on screen
}

// startProgress redraws the progress line twice a second until stopped.
// It reads the copier's counters: the copy itself never waits for it.
func (p *printer) startProgress(c *pcapstream.Copier, start time.Time) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				pr := c.Progress()
				p.mu.Lock()
				fmt.Fprintf(p.w, "\r\033[K%d packets  %s  %d dropped  %s", pr.Packets, humanBytes(pr.Bytes), pr.Dropped, time.Since(start).Round(time.Second))
				p.progress = true
				p.mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func (p *printer) clearProgress() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.progress {
		fmt.Fprint(p.w, "\r\033[K")
		p.progress = false
	}
}
