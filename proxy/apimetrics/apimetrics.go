// Package apimetrics defines pcap-server-api's Prometheus metrics. Every
// label has a small fixed set of values: no app GUIDs, user ids or cell
// IPs, whose numbers grow with the foundation.
package apimetrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

const namespace = "pcap_api"

// Metrics of one API. The zero-cost nil *Metrics records nothing, so
// packages can be used (and tested) without a registry.
type Metrics struct {
	AgentSessions     prometheus.Gauge
	Handshakes        *prometheus.CounterVec
	CaptureRequests   *prometheus.CounterVec
	CapturesActive    prometheus.Gauge
	Captures          *prometheus.CounterVec
	CaptureDuration   prometheus.Histogram
	StreamedBytes     prometheus.Counter
	StreamedPackets   prometheus.Counter
	Dropped           *prometheus.CounterVec
	UpstreamDuration  *prometheus.HistogramVec
	StreamOpenSeconds *prometheus.HistogramVec
	Draining          prometheus.Gauge
}

// Target kinds, the target label of the capture metrics: captures of
// apps' containers and of BOSH VMs.
const (
	TargetApp  = "app"
	TargetBosh = "bosh"
)

// Drop reasons, as in the Pcap-Dropped-Detail trailer.
const (
	DropKernel = "kernel"
	DropAgent  = "agent"
	DropAPI    = "api"
)

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		AgentSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "agent_sessions",
			Help: "Agent tunnel sessions connected to this API replica.",
		}),
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "agent_handshakes_total",
			Help: "Agent connection attempts by result: accepted, tls_failed, unsupported_version, identity, invalid_hello, duplicate (a second session of one agent process), error.",
		}, []string{"result"}),
		CaptureRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "capture_requests_total",
			Help: "Capture requests by the HTTP status they were answered with and the target kind (app, bosh).",
		}, []string{"code", "target"}),
		CapturesActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "captures_active",
			Help: "Captures streaming to clients now.",
		}),
		Captures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "captures_total",
			Help: "Finished captures by end reason and target kind (app, bosh).",
		}, []string{"reason", "target"}),
		CaptureDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "capture_duration_seconds",
			Help:    "How long captures streamed.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600},
		}),
		StreamedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "streamed_bytes_total",
			Help: "Bytes of pcap and pcapng streamed to clients.",
		}),
		StreamedPackets: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "streamed_packets_total",
			Help: "Packets streamed to clients.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dropped_packets_total",
			Help: "Packets lost by where: kernel (on the cell: capture ring full, or dropped by the interface), agent (agent buffer full: tunnel too slow), api (this API's buffer full: client too slow).",
		}, []string{"reason"}),
		UpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Requests to the Cloud Controller, UAA, the BOSH director and its UAA, by upstream, endpoint class and result (2xx, 4xx, 5xx, error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream", "endpoint", "result"}),
		StreamOpenSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "stream_open_duration_seconds",
			Help:    "From opening a capture stream to the agent's answer (started or error), which includes the container lookup on the cell.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}, []string{"result"}),
		Draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "draining",
			Help: "1 while this replica drains for shutdown, else 0.",
		}),
	}
	reg.MustRegister(m.AgentSessions, m.Handshakes, m.CaptureRequests, m.CapturesActive, m.Captures, m.CaptureDuration,
		m.StreamedBytes, m.StreamedPackets, m.Dropped, m.UpstreamDuration, m.StreamOpenSeconds, m.Draining)
	// Known label values exist from the start: a rate over a series that
	// appears only with the first event misses that event.
	for _, r := range []string{DropKernel, DropAgent, DropAPI} {
		m.Dropped.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "tls_failed", string(wire.RefusedVersion), string(wire.RefusedIdentity), string(wire.RefusedInvalid), string(wire.RefusedDuplicate), "error"} {
		m.Handshakes.WithLabelValues(r)
	}
	for _, target := range []string{TargetApp, TargetBosh} {
		for _, r := range []wire.EndReason{wire.EndRequested, wire.EndDuration, wire.EndPackets, wire.EndMaxBytes, wire.EndClientGone,
			wire.EndAgentLost, wire.EndAgentDraining, wire.EndAPIDraining, wire.EndContainerGone, wire.EndError} {
			m.Captures.WithLabelValues(string(r), target)
		}
		for _, code := range []int{200, 400, 401, 403, 404, 409, 429, 500, 502, 503} {
			m.CaptureRequests.WithLabelValues(strconv.Itoa(code), target)
		}
	}
	for _, r := range []string{"started", "error"} {
		m.StreamOpenSeconds.WithLabelValues(r)
	}
	return m
}

// Handshake counts an agent connection attempt.
func (m *Metrics) Handshake(result string) {
	if m != nil {
		m.Handshakes.WithLabelValues(result).Inc()
	}
}

// SessionsChanged adds delta connected sessions.
func (m *Metrics) SessionsChanged(delta int) {
	if m != nil {
		m.AgentSessions.Add(float64(delta))
	}
}

// Request counts a capture request's answer; target is TargetApp or
// TargetBosh.
func (m *Metrics) Request(target string, status int) {
	if m != nil {
		m.CaptureRequests.WithLabelValues(strconv.Itoa(status), target).Inc()
	}
}

// CaptureStarted and CaptureEnded track running captures.
func (m *Metrics) CaptureStarted() {
	if m != nil {
		m.CapturesActive.Inc()
	}
}

func (m *Metrics) CaptureEnded(target string, reason wire.EndReason, d time.Duration) {
	if m != nil {
		m.CapturesActive.Dec()
		m.Captures.WithLabelValues(string(reason), target).Inc()
		m.CaptureDuration.Observe(d.Seconds())
	}
}

// Streamed counts what reached a client.
func (m *Metrics) Streamed(packets, bytes int) {
	if m != nil {
		m.StreamedPackets.Add(float64(packets))
		m.StreamedBytes.Add(float64(bytes))
	}
}

// Drop counts lost packets.
func (m *Metrics) Drop(reason string, n uint64) {
	if m != nil && n > 0 {
		m.Dropped.WithLabelValues(reason).Add(float64(n))
	}
}

// StreamOpened observes how long an agent took to answer.
func (m *Metrics) StreamOpened(started bool, d time.Duration) {
	if m != nil {
		result := "error"
		if started {
			result = "started"
		}
		m.StreamOpenSeconds.WithLabelValues(result).Observe(d.Seconds())
	}
}

// SetDraining reports the drain state.
func (m *Metrics) SetDraining(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.Draining.Set(v)
	}
}

// Transport wraps rt to observe requests to upstream (cloud_controller or
// uaa), classed by endpoint.
func (m *Metrics) Transport(upstream string, rt http.RoundTripper) http.RoundTripper {
	if m == nil {
		return rt
	}
	return roundTripper{m: m, upstream: upstream, next: rt}
}

type roundTripper struct {
	m        *Metrics
	upstream string
	next     http.RoundTripper
}

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	result := "error"
	if err == nil {
		result = strconv.Itoa(resp.StatusCode/100) + "xx"
	}
	t.m.UpstreamDuration.WithLabelValues(t.upstream, EndpointClass(req.URL.Path), result).Observe(time.Since(start).Seconds())
	return resp, err
}

// EndpointClass names the kind of Cloud Controller or UAA endpoint a path
// is, with a fixed set of values.
func EndpointClass(path string) string {
	switch {
	case path == "/" || path == "":
		return "root"
	case strings.HasSuffix(path, "/stats"):
		return "process_stats"
	case strings.HasPrefix(path, "/v3/roles"):
		return "roles"
	case strings.HasSuffix(path, "/ssh_enabled"):
		return "ssh_enabled"
	case strings.HasPrefix(path, "/v3/apps"):
		return "apps"
	case strings.HasSuffix(path, "/token_keys"):
		return "token_keys"
	case strings.Contains(path, "openid-configuration"):
		return "discovery"
	case path == "/info":
		return "director_info"
	case strings.HasSuffix(path, "/instances"):
		return "director_instances"
	case path == "/deployments":
		return "director_deployments"
	}
	return "other"
}
