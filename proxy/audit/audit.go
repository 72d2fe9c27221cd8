// Package audit writes the API's audit trail: one JSON object per line for
// every capture and every refused capture request, saying who asked for
// what. Tokens never appear in it.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Record is one audit line. Event is "capture" for a capture that ran,
// "refused" for a request that did not get one, "stop" and
// "stop_refused" for requests to stop one.
type Record struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	CaptureID string    `json:"capture_id,omitempty"`

	UserID   string `json:"user_id,omitempty"`
	UserName string `json:"user_name,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Remote   string `json:"remote_addr,omitempty"`
	// ForwardedFor and VcapRequestID are the X-Forwarded-For and
	// X-Vcap-Request-Id headers the gorouter adds: where the request came
	// from beyond the gorouter, and the id of its access log line. Always
	// present, empty for a request that did not pass a gorouter.
	ForwardedFor  string `json:"forwarded_for"`
	VcapRequestID string `json:"vcap_request_id"`

	// Target is what was captured: "app" (an app's containers) or "bosh"
	// (VMs of a BOSH deployment).
	Target  string `json:"target,omitempty"`
	AppGUID string `json:"app_guid,omitempty"`
	AppName string `json:"app_name,omitempty"`
	// Deployment and InstanceIDs are a BOSH capture's deployment and the
	// director's ids of its instances.
	Deployment  string    `json:"deployment,omitempty"`
	Instances   Instances `json:"instances,omitzero"`
	InstanceIDs []string  `json:"instance_ids,omitempty"`
	Device      string    `json:"device,omitempty"`
	Filter      string    `json:"filter,omitempty"`

	Start     *time.Time `json:"start,omitempty"`
	Duration  float64    `json:"duration_seconds,omitempty"`
	Bytes     int64      `json:"bytes,omitempty"`
	Packets   uint64     `json:"packets,omitempty"`
	Dropped   uint64     `json:"dropped,omitempty"`
	EndReason string     `json:"end_reason,omitempty"`
	// CountsUnknown names the instances whose final counters never
	// arrived, and why: Dropped is then a lower bound.
	CountsUnknown string `json:"counts_unknown,omitempty"`

	// For refused requests: the HTTP status and why.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Instances are the instances of a capture: an app's instance indexes,
// written as JSON numbers ([0,2]), or BOSH instances as GROUP/INDEX
// (["router/0"]).
type Instances struct {
	Indexes []int
	Names   []string
}

func (i Instances) IsZero() bool { return len(i.Indexes) == 0 && len(i.Names) == 0 }

func (i Instances) MarshalJSON() ([]byte, error) {
	if len(i.Names) > 0 {
		return json.Marshal(i.Names)
	}
	return json.Marshal(i.Indexes)
}

// Log writes records as JSON lines; safe for concurrent use.
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// New writes to w.
func New(w io.Writer) *Log { return &Log{w: w} }

// Write appends one record, stamping its time if unset.
func (l *Log) Write(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}
