package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/audit"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

var captureIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// handleStop is DELETE /v1/apps/{app_guid}/capture/{capture_id}: stop a
// capture gracefully. The agents drain, and the stream ends with reason
// requested and every trailer. The request may reach any replica (the
// gorouter balances each request on its own): the replica that streams
// the capture stops it at once; any other asks the agents on the app's
// cells, which know their captures and their owners. Only the owner or an
// admin may stop a capture.
func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	captureID, appGUID := r.PathValue("capture_id"), r.PathValue("app_guid")
	st := &stopCall{s: s, w: w, captureID: captureID, what: "app " + appGUID,
		rec: newAuditRecord("stop_refused", r, captureID)}
	st.rec.Target, st.rec.AppGUID = apimetrics.TargetApp, appGUID
	id, err := s.auth.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		st.refuse(problem.From(err))
		return
	}
	if !st.checkID(id) {
		return
	}
	process := "web"
	for k, v := range r.URL.Query() {
		if k != "process" || len(v) != 1 || !processPattern.MatchString(v[0]) {
			st.refuse(problem.New(http.StatusBadRequest, "a stop takes only the query parameter process, once, as a process type"))
			return
		}
		process = v[0]
	}
	st.run(ctx, id, appScope(appGUID), id.IsAdmin(), func(ctx context.Context) ([]netip.Addr, error) {
		// Resolving the app also checks that the caller may see it at all
		// (not the SSH policy: a stop reveals nothing).
		_, instances, err := s.resolver.ResolveForStop(ctx, id, appGUID, process)
		var cells []netip.Addr
		for _, t := range instances {
			if !slices.Contains(cells, t.CellIP) {
				cells = append(cells, t.CellIP)
			}
		}
		return cells, err
	}, wire.StopCapture{CaptureID: captureID, AppGUID: appGUID, Requester: id.Subject(), Admin: id.IsAdmin()},
		fmt.Sprintf("it has ended, or it captures another process than %q", process))
}

// stopCall is one stop request on its way, for apps and VMs alike.
type stopCall struct {
	s         *Server
	w         http.ResponseWriter
	captureID string
	what      string // "app GUID", "deployment NAME"
	rec       audit.Record
}

func (st *stopCall) refuse(p *problem.Error) {
	st.rec.Status, st.rec.Reason = p.Status, p.Detail
	st.s.writeAudit(st.rec)
	st.s.writeProblem(st.w, p)
}

// checkID records the caller and checks the capture id's form.
func (st *stopCall) checkID(id *Identity) bool {
	st.rec.UserID, st.rec.UserName, st.rec.ClientID = id.UserID, id.UserName, id.ClientID
	if !captureIDPattern.MatchString(st.captureID) {
		st.refuse(problem.New(http.StatusBadRequest, "capture id %q is not a capture id (the Pcap-Capture-Id header of the capture)", st.captureID))
		return false
	}
	return true
}

// run stops the capture: here if this replica streams it, otherwise
// through the agents that cells (resolved with the caller's own
// authority, which also checks that the caller may see the target) name.
// notFound says why a capture might not be found.
func (st *stopCall) run(ctx context.Context, id *Identity, scope string, admin bool, cells func(context.Context) ([]netip.Addr, error), req wire.StopCapture, notFound string) {
	s, captureID := st.s, st.captureID
	accepted := func(how string) {
		st.rec.Event, st.rec.Status, st.rec.Reason = "stop", http.StatusAccepted, how
		s.writeAudit(st.rec)
		s.log.Info("capture stop requested", "capture_id", captureID, "of", st.what, "user_id", id.UserID, "client_id", id.ClientID, "how", how)
		writeJSON(st.w, http.StatusAccepted, map[string]string{"capture_id": captureID, "status": "stopping"})
	}
	forbidden := func() {
		st.refuse(problem.New(http.StatusForbidden, "capture %s belongs to another user: only its owner or an admin may stop it", captureID))
	}

	switch found, othersCapture := s.stopLocal(captureID, scope, id.Subject(), admin); {
	case othersCapture:
		// Someone else's: say so only to who may see the target at all.
		if _, err := cells(ctx); err != nil {
			st.refuse(problem.From(err))
		} else {
			forbidden()
		}
		return
	case found:
		accepted("on this replica")
		return
	}

	addrs, err := cells(ctx)
	if err != nil {
		st.refuse(problem.From(err))
		return
	}
	out := capture.StopElsewhere(ctx, captureAgents{s.agents}, addrs, req)
	switch {
	case out.Stopping > 0:
		accepted("through the agents")
	case out.Forbidden:
		forbidden()
	case len(out.Errors) > 0:
		msgs := make([]string, len(out.Errors))
		for i, e := range out.Errors {
			msgs[i] = e.Error()
		}
		st.refuse(problem.Wrap(errors.Join(out.Errors...), http.StatusServiceUnavailable,
			"capture %s of %s was not found on the agents that answered; %s", captureID, st.what, strings.Join(msgs, "; ")))
	default:
		st.refuse(problem.New(http.StatusNotFound, "no running capture %s of %s: %s", captureID, st.what, notFound))
	}
}

// stopLocal stops the capture if this replica streams it and it is the
// caller's to stop; othersCapture says it runs here for someone else.
func (s *Server) stopLocal(captureID, scope, subject string, admin bool) (found, othersCapture bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.running[captureID]
	if !ok || r.scope != scope {
		return false, false
	}
	if r.subject != subject && !admin {
		return false, true
	}
	select {
	case r.stop <- wire.EndRequested:
	default: // already ending (a stop or the drain came first)
	}
	return true, false
}
