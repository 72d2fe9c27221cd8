package api

import (
	"errors"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

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
	rec := newAuditRecord("stop_refused", r, captureID, appGUID)
	refuse := func(p *problem.Error) {
		rec.Status, rec.Reason = p.Status, p.Detail
		s.writeAudit(rec)
		s.writeProblem(w, p)
	}
	id, err := s.auth.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		refuse(problem.From(err))
		return
	}
	rec.UserID, rec.UserName, rec.ClientID = id.UserID, id.UserName, id.ClientID
	if !captureIDPattern.MatchString(captureID) {
		refuse(problem.New(http.StatusBadRequest, "capture id %q is not a capture id (the Pcap-Capture-Id header of the capture)", captureID))
		return
	}
	process := "web"
	for k, v := range r.URL.Query() {
		if k != "process" || len(v) != 1 || !processPattern.MatchString(v[0]) {
			refuse(problem.New(http.StatusBadRequest, "a stop takes only the query parameter process, once, as a process type"))
			return
		}
		process = v[0]
	}
	accepted := func(how string) {
		rec.Event, rec.Status, rec.Reason = "stop", http.StatusAccepted, how
		s.writeAudit(rec)
		s.log.Info("capture stop requested", "capture_id", captureID, "app_guid", appGUID, "user_id", id.UserID, "how", how)
		writeJSON(w, http.StatusAccepted, map[string]string{"capture_id": captureID, "status": "stopping"})
	}

	switch found, othersCapture := s.stopLocal(captureID, appGUID, id); {
	case othersCapture:
		// Someone else's: say so only to who may see the app at all.
		if _, _, err := s.resolver.ResolveForStop(ctx, id, appGUID, process); err != nil {
			refuse(problem.From(err))
		} else {
			refuse(problem.New(http.StatusForbidden, "capture %s belongs to another user: only its owner or an admin may stop it", captureID))
		}
		return
	case found:
		accepted("on this replica")
		return
	}

	// Elsewhere: the agents on the app's cells decide. Resolving the app
	// also checks that the caller may see it at all.
	_, targets, err := s.resolver.ResolveForStop(ctx, id, appGUID, process)
	if err != nil {
		refuse(problem.From(err))
		return
	}
	var cells []netip.Addr
	for _, t := range targets {
		if !slices.Contains(cells, t.CellIP) {
			cells = append(cells, t.CellIP)
		}
	}
	out := capture.StopElsewhere(ctx, captureAgents{s.agents}, cells, wire.StopCapture{
		CaptureID: captureID, AppGUID: appGUID, Requester: id.Subject(), Admin: id.IsAdmin(),
	})
	switch {
	case out.Stopping > 0:
		accepted("through the agents")
	case out.Forbidden:
		refuse(problem.New(http.StatusForbidden, "capture %s belongs to another user: only its owner or an admin may stop it", captureID))
	case len(out.Errors) > 0:
		msgs := make([]string, len(out.Errors))
		for i, e := range out.Errors {
			msgs[i] = e.Error()
		}
		refuse(problem.Wrap(errors.Join(out.Errors...), http.StatusServiceUnavailable,
			"capture %s of app %s was not found on the cells that answered; %s", captureID, appGUID, strings.Join(msgs, "; ")))
	default:
		refuse(problem.New(http.StatusNotFound, "no running capture %s of app %s: it has ended, or it captures another process than %q", captureID, appGUID, process))
	}
}

// stopLocal stops the capture if this replica streams it and it is the
// caller's to stop; othersCapture says it runs here for someone else.
func (s *Server) stopLocal(captureID, appGUID string, id *Identity) (found, othersCapture bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.running[captureID]
	if !ok || r.appGUID != appGUID {
		return false, false
	}
	if r.subject != id.Subject() && !id.IsAdmin() {
		return false, true
	}
	select {
	case r.stop <- wire.EndRequested:
	default: // already ending (a stop or the drain came first)
	}
	return true, false
}
