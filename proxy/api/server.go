// Package api is the HTTP side of pcap-server-api: authentication,
// authorization, limits, the capture endpoint, the agent list, health,
// the CLI downloads and draining.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/audit"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/tunnel"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Identity is an authenticated caller: a verified UAA token, or the dev
// mode's fixed admin.
type Identity = uaa.Identity

// Authenticator checks the Authorization header. Its errors are
// *problem.Error (401 with a message that says what is wrong, 503 when
// the token keys cannot be fetched).
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (*Identity, error)
}

// App is the app a capture is for.
type App struct {
	GUID string
	Name string
}

// Resolver decides whether the caller may capture the app and finds its
// instances. Its errors are *problem.Error (403, 404, 409, 502, 503).
type Resolver interface {
	Resolve(ctx context.Context, id *Identity, appGUID, process string, indices []int) (App, []capture.AppInstance, error)
	// ResolveForStop decides whether the caller may stop a capture of
	// the app and finds the running instances whose agents may hold it:
	// Resolve's rules without those that guard only what a capture
	// reveals (Cloud Foundry's SSH policy).
	ResolveForStop(ctx context.Context, id *Identity, appGUID, process string) (App, []capture.AppInstance, error)
}

// BoshAccess serves the captures of BOSH VMs: it verifies tokens of the
// director's UAA and decides, with the director, who may capture which
// VMs. Its errors are *problem.Error.
type BoshAccess interface {
	Authenticate(ctx context.Context, authorization string) (*Identity, error)
	// Resolve checks that id may capture VMs of the deployment and lists
	// the instances the slugs (GROUP, GROUP/INDEX, GROUP/ID) name, in
	// the director's order, those without a VM included (Unavailable).
	Resolve(ctx context.Context, id *Identity, deployment string, slugs []string) ([]capture.VM, error)
	// IsAdmin reports a scope that covers every deployment: whoever has
	// it may stop anyone's capture of VMs, and list the agents.
	IsAdmin(id *Identity) bool
}

// Options configure the server.
type Options struct {
	Limits       apiconfig.Limits
	Stream       apiconfig.Stream
	DrainTimeout time.Duration
	// Bosh serves /v1/bosh/; nil: those endpoints do not exist (404) and
	// no director is ever contacted.
	Bosh BoshAccess
	// CLIDir holds the CLI binaries served under /cli/; empty: none.
	CLIDir  string
	Logger  *slog.Logger
	Audit   *audit.Log
	Metrics *apimetrics.Metrics
}

// Server serves the HTTP API.
type Server struct {
	opts     Options
	log      *slog.Logger
	auth     Authenticator
	resolver Resolver
	agents   *tunnel.Registry
	ready    atomic.Bool

	mu       sync.Mutex
	draining bool
	running  map[string]*running
	perUser  map[string]int
	idle     chan struct{} // closed when the last capture ends
}

// running is a capture in progress. scope is what it is of (appScope,
// boshScope): a stop must name it too.
type running struct {
	subject, scope string
	stop           chan wire.EndReason
}

// New returns a server; it is not ready until SetReady(true). auth and
// resolver serve the captures of apps; nil (an API for BOSH VMs only):
// those endpoints do not exist.
func New(opts Options, auth Authenticator, resolver Resolver, agents *tunnel.Registry) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Stream.WriteTimeout <= 0 {
		opts.Stream.WriteTimeout = apiconfig.Default().Stream.WriteTimeout
	}
	return &Server{
		opts:     opts,
		log:      log,
		auth:     auth,
		resolver: resolver,
		agents:   agents,
		running:  map[string]*running{},
		perUser:  map[string]int{},
	}
}

// SetReady marks the server ready (the tunnel listener is up).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.auth != nil && s.resolver != nil {
		mux.HandleFunc("GET /v1/apps/{app_guid}/capture", s.handleCapture)
		mux.HandleFunc("DELETE /v1/apps/{app_guid}/capture/{capture_id}", s.handleStop)
	}
	if s.opts.Bosh != nil {
		mux.HandleFunc("GET /v1/bosh/deployments/{deployment}/capture", s.handleBoshCapture)
		mux.HandleFunc("DELETE /v1/bosh/deployments/{deployment}/capture/{capture_id}", s.handleBoshStop)
	}
	mux.HandleFunc("GET /v1/agents", s.handleAgents)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /cli/", cliHandler(s.opts.CLIDir))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	switch {
	case draining:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	case !s.ready.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "agents": s.agents.Count()})
	}
}

// agentInfo is one entry of GET /v1/agents.
type agentInfo struct {
	ID             string             `json:"id"`
	CellIPs        []string           `json:"cell_ips"`
	Version        string             `json:"version"`
	RemoteAddr     string             `json:"remote_addr"`
	ConnectedSince time.Time          `json:"connected_since"`
	ActiveCaptures int64              `json:"active_captures"`
	MaxCaptures    int                `json:"max_captures"`
	Bosh           *wire.BoshInstance `json:"bosh,omitempty"`
	HostCapture    bool               `json:"host_capture,omitempty"`
}

// authenticateAdmin verifies the token and reports whether it is an
// admin's: a Cloud Foundry admin, or where the API serves only BOSH VMs,
// a director admin.
func (s *Server) authenticateAdmin(ctx context.Context, authorization string) (bool, string, error) {
	if s.auth == nil && s.opts.Bosh == nil {
		return false, "", problem.New(http.StatusNotFound, "this API has no authentication configured")
	}
	if s.auth == nil {
		id, err := s.opts.Bosh.Authenticate(ctx, authorization)
		if err != nil {
			return false, "", err
		}
		return s.opts.Bosh.IsAdmin(id), "bosh.admin", nil
	}
	id, err := s.auth.Authenticate(ctx, authorization)
	if err != nil {
		return false, "", err
	}
	return id.IsAdmin(), uaa.AdminScope, nil
}

func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) {
	admin, scope, err := s.authenticateAdmin(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		s.writeProblem(w, problem.From(err))
		return
	}
	if !admin {
		s.writeProblem(w, problem.New(http.StatusForbidden, "listing agents needs the %s scope", scope))
		return
	}
	list := []agentInfo{}
	for _, a := range s.agents.Agents() {
		info := agentInfo{ID: a.ID, Version: a.Version, RemoteAddr: a.Remote.String(), ConnectedSince: a.Since.UTC(),
			ActiveCaptures: a.Active(), MaxCaptures: a.MaxCaptures, Bosh: a.Bosh, HostCapture: a.HostCapture}
		for _, ip := range a.IPs {
			info.CellIPs = append(info.CellIPs, ip.String())
		}
		list = append(list, info)
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": list})
}

// trailers are announced before the body and set after it.
var trailers = []string{"Pcap-End-Reason", "Pcap-Packets", "Pcap-Bytes", "Pcap-Dropped", "Pcap-Dropped-Detail", "Pcap-Counts-Unknown"}

// call is one capture request on its way: its id, log, audit record and
// the target kind for the metrics, the same for apps and VMs.
type call struct {
	s       *Server
	w       http.ResponseWriter
	arrival time.Time
	kind    string // apimetrics.TargetApp or TargetBosh
	id      string
	log     *slog.Logger
	rec     audit.Record
}

func (s *Server) newCall(w http.ResponseWriter, r *http.Request, kind string) *call {
	c := &call{s: s, w: w, arrival: time.Now(), kind: kind, id: newCaptureID()}
	w.Header().Set("Pcap-Capture-Id", c.id)
	c.rec = newAuditRecord("refused", r, c.id)
	c.rec.Target = kind
	c.log = s.log.With("capture_id", c.id, "vcap_request_id", c.rec.VcapRequestID)
	return c
}

// caller records who asks, once the token is verified.
func (c *call) caller(id *Identity) {
	c.rec.UserID, c.rec.UserName, c.rec.ClientID = id.UserID, id.UserName, id.ClientID
}

// refuse answers a request that gets no capture, and audits it.
func (c *call) refuse(p *problem.Error) {
	c.s.opts.Metrics.Request(c.kind, p.Status)
	c.rec.Status, c.rec.Reason = p.Status, p.Detail
	c.s.writeAudit(c.rec)
	c.log.Info("capture refused", "status", p.Status, "detail", p.Detail, "error", p.Err)
	c.s.writeProblem(c.w, p)
}

func (s *Server) handleCapture(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c := s.newCall(w, r, apimetrics.TargetApp)
	c.rec.AppGUID = r.PathValue("app_guid")
	id, err := s.auth.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	c.caller(id)
	params, err := parseCaptureParams(r.URL.Query(), s.opts.Limits)
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	c.rec.Device, c.rec.Filter, c.rec.Instances = strings.Join(params.devices, ","), params.filter, audit.Instances{Indexes: params.indices}
	app, instances, err := s.resolver.Resolve(ctx, id, c.rec.AppGUID, params.process, params.indices)
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	c.rec.AppName = app.Name
	targets := make([]capture.Target, len(instances))
	for i, t := range instances {
		targets[i] = t
	}
	c.stream(r, id, params, targets, appScope(c.rec.AppGUID), "app_guid", app.GUID, "app_name", app.Name)
}

// stream runs a capture of targets, whatever their kind: it counts it
// against the limits, starts every instance, streams the file and writes
// the trailers, the audit line, the metrics and the logs. logFields say
// what is captured, for the log line of the start.
func (c *call) stream(r *http.Request, id *Identity, params captureParams, targets []capture.Target, scope string, logFields ...any) {
	s, w, ctx, log := c.s, c.w, r.Context(), c.log
	c.rec.Instances = instancesOf(targets)
	run, perr := s.admit(c.id, id.Subject(), scope)
	if perr != nil {
		c.refuse(perr)
		return
	}
	defer s.finish(c.id)

	req := capture.Request{
		CaptureID:  c.id,
		Targets:    targets,
		Devices:    params.devices,
		Filter:     params.filter,
		Snaplen:    params.snaplen,
		Duration:   params.duration,
		Deadline:   c.arrival.Add(params.duration - s.stopSlack(params.duration)),
		MaxPackets: params.maxPackets,
		MaxBytes:   int64(s.opts.Limits.MaxBytes),
		Format:     params.format,
		Owner:      id.Subject(),
	}
	sess, failed := capture.Start(ctx, captureAgents{s.agents}, req, capture.Options{
		PerAgentLimit: s.opts.Limits.CapturesPerAgent,
		BufferBytes:   int(s.opts.Limits.BufferBytes),
		StatsInterval: s.opts.Stream.StatsInterval.D(),
		Logger:        s.log,
		Metrics:       s.opts.Metrics,
	})
	if len(failed) > 0 {
		w.Header().Set("Pcap-Instance-Errors", capture.FormatInstanceErrors(failed))
	}
	if sess == nil {
		first := failed[0]
		detail := first.Message
		if len(targets) > 1 {
			detail = fmt.Sprintf("no instance could be captured; instance %s: %s", first.Instance, first.Message)
		}
		c.refuse(problem.New(first.Status, "%s", detail))
		return
	}

	started := sess.Started()
	c.rec.Instances = instancesOf(started)
	names := make([]string, len(started))
	for i, t := range started {
		names[i] = t.Instance()
	}
	h := w.Header()
	h.Set("Content-Type", params.format.ContentType())
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Pcap-Instances", strings.Join(names, ","))
	h.Set("Pcap-Duration", params.duration.String())
	h.Set("Trailer", strings.Join(trailers, ", "))
	w.WriteHeader(http.StatusOK)
	s.opts.Metrics.Request(c.kind, http.StatusOK)
	s.opts.Metrics.CaptureStarted()
	start := time.Now()
	log.Info("capture started", append(logFields, "target", c.kind, "instances", names, "user_id", id.UserID,
		"user_name", id.UserName, "client_id", id.ClientID, "devices", params.devices, "filter", params.filter, "format", params.format)...)

	cw := &clientWriter{w: w, rc: http.NewResponseController(w), timeout: s.opts.Stream.WriteTimeout.D()}
	res := sess.Run(ctx, cw, cw.Flush, run.stop)

	h.Set("Pcap-End-Reason", string(res.Reason))
	h.Set("Pcap-Packets", strconv.FormatUint(res.Packets, 10))
	h.Set("Pcap-Bytes", strconv.FormatInt(res.Bytes, 10))
	dropped := strconv.FormatUint(res.Dropped.Total(), 10)
	if unknown := res.CountsUnknown(); len(unknown) > 0 {
		// Never a plain number that is not the whole truth: a reader
		// that expects one fails rather than believe it.
		dropped = ">=" + dropped
		c.rec.CountsUnknown = capture.FormatInstanceErrors(unknown)
		h.Set("Pcap-Counts-Unknown", c.rec.CountsUnknown)
	}
	h.Set("Pcap-Dropped", dropped)
	h.Set("Pcap-Dropped-Detail", res.Dropped.DropDetail())

	s.opts.Metrics.CaptureEnded(c.kind, res.Reason, time.Since(start))
	rec := c.rec
	rec.Event = "capture"
	rec.Start = &start
	rec.Duration = time.Since(start).Seconds()
	rec.Bytes, rec.Packets, rec.Dropped, rec.EndReason = res.Bytes, res.Packets, res.Dropped.Total(), string(res.Reason)
	s.writeAudit(rec)
	log.Info("capture ended", "reason", res.Reason, "packets", res.Packets, "bytes", res.Bytes,
		"dropped_kernel", res.Dropped.Kernel, "dropped_agent", res.Dropped.Agent, "dropped_api", res.Dropped.API,
		"counts_unknown", rec.CountsUnknown, "duration_seconds", rec.Duration)
}

// instancesOf lists targets for the audit trail: an app's instance
// indexes, a deployment's GROUP/INDEX.
func instancesOf(targets []capture.Target) audit.Instances {
	var out audit.Instances
	for _, t := range targets {
		switch t := t.(type) {
		case capture.AppInstance:
			out.Indexes = append(out.Indexes, t.Index)
		default:
			out.Names = append(out.Names, t.Instance())
		}
	}
	return out
}

// appScope and boshScope name what a capture is of, for stop requests:
// a stop names the app or deployment along with the capture id.
func appScope(appGUID string) string     { return "app/" + appGUID }
func boshScope(deployment string) string { return "bosh/" + deployment }

// stopSlack is how much earlier than its duration a capture at the
// maximum duration is stopped, so that the agents' drain and the trailers
// fit: at the default maximum of 15 minutes the gorouter cuts the request
// at exactly that, trailers and all. Shorter captures run their duration.
func (s *Server) stopSlack(d time.Duration) time.Duration {
	if d < s.opts.Limits.MaxDuration.D() {
		return 0
	}
	return min(2*time.Second, d/10)
}

// captureAgents adapts the tunnel registry to what a capture needs.
type captureAgents struct{ r *tunnel.Registry }

func (c captureAgents) Lookup(ip netip.Addr) (capture.Agent, bool) {
	a, ok := c.r.Lookup(ip)
	if !ok {
		// Not a typed nil: the capture compares with nil.
		return nil, false
	}
	return a, true
}

// clientWriter gives every write and flush to the client a deadline, so
// that a client that stops reading cannot hold a capture open forever,
// and clears it afterwards: Go's HTTP/2 server resets a stream whose write
// deadline passes even while nothing is being written, and over HTTP/1.1
// a deadline left behind fails the trailers, so a deadline that outlived
// its write would cut a capture that is merely quiet.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (c *clientWriter) Write(p []byte) (n int, err error) {
	c.within(func() error {
		n, err = c.w.Write(p)
		return err
	})
	return n, err
}

// Flush pushes what was written to the client; over HTTP/2 that is when
// the bytes wait for the client's flow control window.
func (c *clientWriter) Flush() error { return c.within(c.rc.Flush) }

func (c *clientWriter) within(op func() error) error {
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.timeout))
	err := op()
	_ = c.rc.SetWriteDeadline(time.Time{})
	return err
}

// admit counts a capture against the per-user and total limits.
func (s *Server) admit(id, subject, scope string) (*running, *problem.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.opts.Limits
	switch {
	case s.draining:
		return nil, problem.New(http.StatusServiceUnavailable, "this API replica is shutting down; try again")
	case len(s.running) >= l.CapturesTotal:
		return nil, problem.New(http.StatusTooManyRequests, "this API replica already runs its maximum of %d captures; try again later", l.CapturesTotal)
	case s.perUser[subject] >= l.CapturesPerUser:
		return nil, problem.New(http.StatusTooManyRequests, "you already run %d captures, the maximum per user", l.CapturesPerUser)
	}
	r := &running{subject: subject, scope: scope, stop: make(chan wire.EndReason, 1)}
	if len(s.running) == 0 {
		s.idle = make(chan struct{})
	}
	s.running[id] = r
	s.perUser[subject]++
	return r, nil
}

func (s *Server) finish(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.running[id]
	delete(s.running, id)
	if s.perUser[r.subject]--; s.perUser[r.subject] == 0 {
		delete(s.perUser, r.subject)
	}
	if len(s.running) == 0 {
		close(s.idle)
	}
}

// Drain turns the server unready and refuses new captures, lets running
// ones go on for up to the drain timeout, then ends them with the reason
// api_draining, and returns once they have ended (or ctx is done).
func (s *Server) Drain(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	idle, n := s.idle, len(s.running)
	s.mu.Unlock()
	s.opts.Metrics.SetDraining(true)
	if n == 0 {
		return
	}
	s.log.Info("draining", "captures", n, "timeout", s.opts.DrainTimeout.String())
	timer := time.NewTimer(s.opts.DrainTimeout)
	defer timer.Stop()
	select {
	case <-idle:
		return
	case <-ctx.Done():
		return
	case <-timer.C:
	}
	s.mu.Lock()
	for _, r := range s.running {
		select {
		case r.stop <- wire.EndAPIDraining:
		default:
		}
	}
	s.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

func (s *Server) writeProblem(w http.ResponseWriter, p *problem.Error) {
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pcap-server-api"`)
	}
	if p.Status >= 500 {
		s.log.Warn("request failed", "status", p.Status, "detail", p.Detail, "error", p.Err)
	}
	problem.Write(w, p)
}

// newAuditRecord starts the audit line of a request with where it came
// from. Behind the gorouter the connection is the gorouter's own, so the
// headers it adds say more: X-Forwarded-For (what the client claimed,
// then the address the gorouter saw) and X-Vcap-Request-Id, the id of
// the gorouter's access log line. Both are recorded as sent, clipped.
func newAuditRecord(event string, r *http.Request, captureID string) audit.Record {
	return audit.Record{
		Event:         event,
		CaptureID:     captureID,
		Remote:        r.RemoteAddr,
		ForwardedFor:  headerValue(r.Header, "X-Forwarded-For"),
		VcapRequestID: headerValue(r.Header, "X-Vcap-Request-Id"),
	}
}

// maxAuditHeader bounds a header's value in an audit line: the client
// chooses it.
const maxAuditHeader = 512

// headerValue joins a header's values as one, the way proxies that
// append to it read it.
func headerValue(h http.Header, name string) string {
	v := strings.Join(h.Values(name), ", ")
	if len(v) > maxAuditHeader {
		v = strings.ToValidUTF8(v[:maxAuditHeader], "") + "..."
	}
	return v
}

func (s *Server) writeAudit(r audit.Record) {
	if s.opts.Audit == nil {
		return
	}
	if err := s.opts.Audit.Write(r); err != nil {
		s.log.Error("audit log", "error", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newCaptureID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
