// Package boshaccess decides whether a verified operator may capture VMs of
// a BOSH deployment and which VMs a capture goes to. The rule is
// pcap-server's (a capture reads traffic, so it takes an admin-class
// scope that covers the deployment; read scopes never do); the facts are
// the director's, asked with the operator's own token, so the director's
// own rules apply too.
package boshaccess

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/capture"
	"github.com/cloudfoundry/pcap-server-release/proxy/director"
	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
)

// Director is what Resolve needs of the director; *director.Client
// provides it.
type Director interface {
	Deployments(ctx context.Context, token string) ([]director.Deployment, error)
	Instances(ctx context.Context, token, deployment string) ([]director.Instance, error)
}

// Scopes of the director's UAA that pcap-server reads.
const (
	ScopeAdmin = "bosh.admin"
	ScopeRead  = "bosh.read"
)

var teamAdminScope = regexp.MustCompile(`^bosh\.teams\.([^.]+)\.admin$`)

// Resolver applies the rule and finds the VMs.
type Resolver struct {
	Director Director
	// UUID is the director's, which names its admin scope
	// bosh.<uuid>.admin.
	UUID string
}

// IsAdmin reports a scope that covers every deployment of the director:
// bosh.admin or bosh.<director uuid>.admin.
func (r *Resolver) IsAdmin(id *uaa.Identity) bool {
	return slices.Contains(id.Scopes, ScopeAdmin) || (r.UUID != "" && slices.Contains(id.Scopes, "bosh."+r.UUID+".admin"))
}

// teamsAdministered are the teams whose admin scope the token holds.
func teamsAdministered(id *uaa.Identity) []string {
	var teams []string
	for _, s := range id.Scopes {
		if m := teamAdminScope.FindStringSubmatch(s); m != nil {
			teams = append(teams, m[1])
		}
	}
	return teams
}

// Resolve checks that id may capture VMs of deployment and returns the
// instances the slugs name (GROUP: all of the group; GROUP/INDEX;
// GROUP/ID), each once, in the director's order; nil slugs: every
// instance. Instances without a VM are returned with Unavailable set,
// so that the capture names them. Errors are *problem.Error: 403 for a
// token whose scopes do not cover the deployment (pcap-server's rule, or
// the director's 401 code 600000), 404 for an unknown deployment or
// instance, and the director's other failures.
func (r *Resolver) Resolve(ctx context.Context, id *uaa.Identity, deployment string, slugs []string) ([]capture.VM, error) {
	if err := r.authorize(ctx, id, deployment); err != nil {
		return nil, err
	}
	instances, err := r.Director.Instances(ctx, id.Token, deployment)
	if err != nil {
		return nil, err
	}
	picked, err := pick(deployment, instances, slugs)
	if err != nil {
		return nil, err
	}
	vms := make([]capture.VM, len(picked))
	for i, in := range picked {
		vms[i] = vmOf(deployment, in)
	}
	return vms, nil
}

// authorize is pcap-server's rule: a director admin may capture any
// deployment; a team admin only a deployment of that team (the
// director's GET /deployments, asked with the caller's token, lists each
// deployment's teams); nothing else, read scopes included.
func (r *Resolver) authorize(ctx context.Context, id *uaa.Identity, deployment string) error {
	if r.IsAdmin(id) {
		return nil
	}
	teams := teamsAdministered(id)
	if len(teams) == 0 {
		return problem.New(http.StatusForbidden, "capturing VMs of deployment %q needs an admin scope that covers it: %s, bosh.%s.admin, or bosh.teams.TEAM.admin of one of its teams; this token has %s (read scopes do not suffice: a capture reads the VMs' traffic)",
			deployment, ScopeAdmin, r.uuidOrPlaceholder(), describeScopes(id.Scopes))
	}
	deps, err := r.Director.Deployments(ctx, id.Token)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(deps, func(d director.Deployment) bool { return d.Name == deployment })
	if i < 0 {
		return problem.New(http.StatusForbidden, "deployment %q is not a deployment of your teams (%s), or does not exist", deployment, strings.Join(teams, ", "))
	}
	for _, t := range deps[i].Teams {
		if slices.Contains(teams, t) {
			return nil
		}
	}
	owners := "no team"
	if len(deps[i].Teams) > 0 {
		owners = "teams " + strings.Join(deps[i].Teams, ", ")
	}
	return problem.New(http.StatusForbidden, "deployment %q belongs to %s; this token administers only %s (read scopes do not suffice: a capture reads the VMs' traffic)",
		deployment, owners, strings.Join(teams, ", "))
}

func (r *Resolver) uuidOrPlaceholder() string {
	if r.UUID == "" {
		return "DIRECTOR_UUID"
	}
	return r.UUID
}

// describeScopes lists a token's bosh scopes for a message, or says it
// has none.
func describeScopes(scopes []string) string {
	var bosh []string
	for _, s := range scopes {
		if strings.HasPrefix(s, "bosh.") {
			bosh = append(bosh, s)
		}
	}
	if len(bosh) == 0 {
		return "no bosh scope"
	}
	return "only " + strings.Join(bosh, ", ")
}

// pick returns the instances the slugs name, in the director's order.
func pick(deployment string, instances []director.Instance, slugs []string) ([]director.Instance, error) {
	if slugs == nil {
		return instances, nil
	}
	want := make([]bool, len(instances))
	for _, slug := range slugs {
		group, which, one := strings.Cut(slug, "/")
		matched := false
		for i, in := range instances {
			if in.Job != group {
				continue
			}
			if !one || which == in.ID || (in.Index != nil && which == strconv.Itoa(*in.Index)) {
				want[i], matched = true, true
			}
		}
		if !matched {
			return nil, notFound(deployment, instances, group, slug, one)
		}
	}
	var out []director.Instance
	for i, in := range instances {
		if want[i] {
			out = append(out, in)
		}
	}
	return out, nil
}

// notFound says what the deployment has instead.
func notFound(deployment string, instances []director.Instance, group, slug string, one bool) *problem.Error {
	var groups, members []string
	for _, in := range instances {
		if !slices.Contains(groups, in.Job) {
			groups = append(groups, in.Job)
		}
		if in.Job == group && in.Index != nil {
			members = append(members, fmt.Sprintf("%s/%d (%s)", in.Job, *in.Index, in.ID))
		}
	}
	if !one || len(members) == 0 {
		return problem.New(http.StatusNotFound, "deployment %q has no instance group %q (its groups: %s)", deployment, group, strings.Join(groups, ", "))
	}
	return problem.New(http.StatusNotFound, "deployment %q has no instance %s (%s has %s)", deployment, slug, group, strings.Join(members, ", "))
}

// vmOf is a director's instance as a capture target.
func vmOf(deployment string, in director.Instance) capture.VM {
	vm := capture.VM{Deployment: deployment, Group: in.Job, ID: in.ID, AZ: in.AZ}
	if in.Index != nil {
		vm.Index = *in.Index
	}
	if in.CID == "" {
		vm.Unavailable = fmt.Sprintf("the director lists no VM for instance %s (%s): it is stopped, or an errand's", vm.Instance(), in.ID)
		return vm
	}
	for _, s := range in.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			vm.Unavailable = fmt.Sprintf("the director lists %q as an IP address of instance %s (%s)", s, vm.Instance(), in.ID)
			return vm
		}
		vm.IPs = append(vm.IPs, ip.Unmap())
	}
	return vm
}
