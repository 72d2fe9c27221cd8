package api

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/apimetrics"
	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// handleBoshCapture is GET /v1/bosh/deployments/{deployment}/capture: a
// capture of BOSH VMs, for operators. The token is the director UAA's;
// BoshAccess decides with the director whether it may capture this
// deployment and which instances the instance parameters name. From
// there on it is a capture like an app's: the same limits, headers,
// trailers, stop, drain, audit and metrics.
func (s *Server) handleBoshCapture(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c := s.newCall(w, r, apimetrics.TargetBosh)
	deployment := r.PathValue("deployment")
	c.rec.Deployment = deployment
	id, err := s.opts.Bosh.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	c.caller(id)
	if !boshNamePattern.MatchString(deployment) {
		c.refuse(problem.New(http.StatusBadRequest, "%q is not a BOSH deployment name", deployment))
		return
	}
	params, err := parseBoshParams(r.URL.Query(), s.opts.Limits)
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	c.rec.Device, c.rec.Filter = strings.Join(params.devices, ","), params.filter
	c.rec.Instances.Names = params.slugs
	vms, err := s.opts.Bosh.Resolve(ctx, id, deployment, params.slugs)
	if err != nil {
		c.refuse(problem.From(err))
		return
	}
	targets := make([]capture.Target, len(vms))
	for i, vm := range vms {
		targets[i] = vm
		c.rec.InstanceIDs = append(c.rec.InstanceIDs, vm.ID)
	}
	c.stream(r, id, params, targets, boshScope(deployment), "bosh_deployment", deployment)
}

// handleBoshStop is DELETE
// /v1/bosh/deployments/{deployment}/capture/{capture_id}: as for apps,
// the replica streaming the capture stops it, any other asks the agents
// of the deployment's VMs. Its owner may stop it, or a director admin
// (bosh.admin, bosh.<director uuid>.admin).
func (s *Server) handleBoshStop(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	captureID, deployment := r.PathValue("capture_id"), r.PathValue("deployment")
	st := &stopCall{s: s, w: w, captureID: captureID, what: "deployment " + deployment,
		rec: newAuditRecord("stop_refused", r, captureID)}
	st.rec.Target, st.rec.Deployment = apimetrics.TargetBosh, deployment
	id, err := s.opts.Bosh.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		st.refuse(problem.From(err))
		return
	}
	if !st.checkID(id) {
		return
	}
	if !boshNamePattern.MatchString(deployment) || len(r.URL.Query()) > 0 {
		st.refuse(problem.New(http.StatusBadRequest, "a stop names a deployment and a capture id, and takes no query parameters"))
		return
	}
	admin := s.opts.Bosh.IsAdmin(id)
	st.run(ctx, id, boshScope(deployment), admin, func(ctx context.Context) ([]netip.Addr, error) {
		// Every VM of the deployment: the capture's are among them. This
		// also checks, with the director, that the caller may see it.
		vms, err := s.opts.Bosh.Resolve(ctx, id, deployment, nil)
		var addrs []netip.Addr
		for _, vm := range vms {
			for _, ip := range vm.IPs {
				if !slices.Contains(addrs, ip) {
					addrs = append(addrs, ip)
				}
			}
		}
		return addrs, err
	}, wire.StopCapture{CaptureID: captureID, Target: wire.TargetHost, Deployment: deployment, Requester: id.Subject(), Admin: admin},
		"it has ended")
}
