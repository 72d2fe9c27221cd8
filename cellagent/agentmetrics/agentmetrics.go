// Package agentmetrics defines the agent's Prometheus metrics. Labels have
// small fixed sets of values: no app GUIDs, handles or API addresses.
package agentmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

const namespace = "pcap_agent"

// Metrics of one agent; a nil *Metrics records nothing.
type Metrics struct {
	APISessions      prometheus.Gauge
	APIReplicasKnown prometheus.Gauge
	Reconnects       *prometheus.CounterVec
	SessionRTT       prometheus.Histogram
	CaptureRequests  *prometheus.CounterVec
	CapturesActive   prometheus.Gauge
	CapturedPackets  prometheus.Counter
	CapturedBytes    prometheus.Counter
	Dropped          *prometheus.CounterVec
	LookupDuration   prometheus.Histogram
	LookupFailures   *prometheus.CounterVec
}

// Drop reasons.
const (
	DropKernel    = "kernel"
	DropInterface = "interface"
	DropAgent     = "agent"
)

// Reconnect reasons: why a session to an API replica ended or could not
// be made.
const (
	ReasonDial         = "dial"
	ReasonTLS          = "tls"
	ReasonHandshake    = "handshake"
	ReasonRefused      = "refused"
	ReasonSessionEnded = "session_ended"
)

// lookupCodes are the container lookup failures.
var lookupCodes = []wire.ErrorCode{wire.ErrContainerNotFound, wire.ErrNoNetns, wire.ErrGardenUnavailable, wire.ErrInternal}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		APISessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "api_sessions",
			Help: "API replicas this agent holds a tunnel session to.",
		}),
		APIReplicasKnown: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "api_replicas_known",
			Help: "API replica addresses the configured names resolve to.",
		}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconnects_total",
			Help: "Tunnel sessions lost or not made, by reason: dial, tls, handshake, refused, session_ended.",
		}, []string{"reason"}),
		SessionRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "session_rtt_seconds",
			Help:    "Round trip of a ping over a tunnel session.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		CaptureRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "capture_requests_total",
			Help: "Capture requests from the API by result: started or the error code sent back.",
		}, []string{"result"}),
		CapturesActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "captures_active",
			Help: "Captures running on this cell.",
		}),
		CapturedPackets: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "captured_packets_total",
			Help: "Packets captured and handed to the tunnel.",
		}),
		CapturedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "captured_bytes_total",
			Help: "Bytes of packet data captured and handed to the tunnel.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dropped_packets_total",
			Help: "Packets lost on this cell: kernel (capture ring full), interface (dropped by the interface), agent (agent buffer full: the tunnel is slower than the traffic).",
		}, []string{"reason"}),
		LookupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "container_lookup_duration_seconds",
			Help:    "Time to find a container and its network namespace.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		LookupFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "container_lookup_failures_total",
			Help: "Failed container lookups by reason: container_not_found, no_netns, garden_unavailable, internal.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.APISessions, m.APIReplicasKnown, m.Reconnects, m.SessionRTT, m.CaptureRequests, m.CapturesActive,
		m.CapturedPackets, m.CapturedBytes, m.Dropped, m.LookupDuration, m.LookupFailures)
	for _, r := range []string{DropKernel, DropInterface, DropAgent} {
		m.Dropped.WithLabelValues(r)
	}
	for _, r := range []string{ReasonDial, ReasonTLS, ReasonHandshake, ReasonRefused, ReasonSessionEnded} {
		m.Reconnects.WithLabelValues(r)
	}
	for _, c := range lookupCodes {
		m.LookupFailures.WithLabelValues(string(c))
	}
	m.CaptureRequests.WithLabelValues("started")
	for _, c := range []wire.ErrorCode{wire.ErrBadRequest, wire.ErrBadFilter, wire.ErrNoSuchDevice, wire.ErrContainerNotFound,
		wire.ErrNoNetns, wire.ErrGardenUnavailable, wire.ErrLimit, wire.ErrDraining, wire.ErrInternal} {
		m.CaptureRequests.WithLabelValues(string(c))
	}
	return m
}

// SetSessions reports connected and known API replicas.
func (m *Metrics) SetSessions(connected, known int) {
	if m != nil {
		m.APISessions.Set(float64(connected))
		m.APIReplicasKnown.Set(float64(known))
	}
}

// Reconnect counts a lost or failed session.
func (m *Metrics) Reconnect(reason string) {
	if m != nil {
		m.Reconnects.WithLabelValues(reason).Inc()
	}
}

// RTT observes a session ping.
func (m *Metrics) RTT(d time.Duration) {
	if m != nil {
		m.SessionRTT.Observe(d.Seconds())
	}
}

// Request counts a capture request's outcome.
func (m *Metrics) Request(result string) {
	if m != nil {
		m.CaptureRequests.WithLabelValues(result).Inc()
	}
}

// CapturesChanged adds delta running captures.
func (m *Metrics) CapturesChanged(delta int) {
	if m != nil {
		m.CapturesActive.Add(float64(delta))
	}
}

// Lookup observes a container lookup; code is empty on success.
func (m *Metrics) Lookup(d time.Duration, code wire.ErrorCode) {
	if m == nil {
		return
	}
	m.LookupDuration.Observe(d.Seconds())
	if code != "" {
		m.LookupFailures.WithLabelValues(string(code)).Inc()
	}
}

// Progress counts what a capture did between two snapshots of its
// cumulative counters.
func (m *Metrics) Progress(prev, now wire.Stats) {
	if m == nil {
		return
	}
	add := func(c prometheus.Counter, a, b uint64) {
		if b > a {
			c.Add(float64(b - a))
		}
	}
	add(m.CapturedPackets, prev.Packets, now.Packets)
	add(m.CapturedBytes, prev.Bytes, now.Bytes)
	add(m.Dropped.WithLabelValues(DropKernel), prev.KernelDropped, now.KernelDropped)
	add(m.Dropped.WithLabelValues(DropInterface), prev.InterfaceDropped, now.InterfaceDropped)
	add(m.Dropped.WithLabelValues(DropAgent), prev.AgentDropped, now.AgentDropped)
}
