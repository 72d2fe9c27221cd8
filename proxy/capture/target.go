package capture

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Target is one thing a capture captures: an app instance's container
// (AppInstance) or a BOSH VM itself (VM). Everything else about a
// capture, its streams, merge, files, limits and end, is the same for
// both.
type Target interface {
	// Instance names the target in Pcap-Instances, Pcap-Instance-Errors,
	// logs and the audit trail: "2" for app instance 2, "router/0" for a
	// VM.
	Instance() string
	// Where says where the target runs, for messages about its agent:
	// "cell 10.0.16.5", "VM router/0 (10.0.1.5)".
	Where() string
	// InterfaceName names the pcapng interface of one of its devices;
	// several says the capture has more than one device.
	InterfaceName(device string, several bool) string
	// InterfaceDescription describes that interface, for Wireshark's
	// interface list and frame.interface_description.
	InterfaceDescription(device string, started *wire.Started) string
	// findAgent picks the agent session that captures the target, or
	// says why there is none.
	findAgent(agents Agents) (Agent, *InstanceError)
	// fill sets the request's fields that name the target.
	fill(req *wire.CaptureRequest)
}

// AppInstance is an app instance: its container on a Diego cell.
type AppInstance struct {
	AppGUID     string
	AppName     string
	ProcessType string
	Index       int
	// InstanceGUID is the garden handle, when the Cloud Controller says.
	InstanceGUID string
	CellIP       netip.Addr
}

func (t AppInstance) Instance() string { return strconv.Itoa(t.Index) }
func (t AppInstance) Where() string    { return "cell " + t.CellIP.String() }

// InterfaceName is APP/INDEX, and the device after it when the capture
// has several.
func (t AppInstance) InterfaceName(device string, several bool) string {
	name := fmt.Sprintf("%s/%d", t.label(), t.Index)
	if several {
		name += "/" + device
	}
	return name
}

func (t AppInstance) InterfaceDescription(device string, started *wire.Started) string {
	parts := []string{"app " + t.label()}
	if t.AppName != "" {
		parts[0] += " (" + t.AppGUID + ")"
	}
	parts = append(parts, fmt.Sprintf("instance %d", t.Index))
	if t.ProcessType != "" {
		parts = append(parts, "process "+t.ProcessType)
	}
	parts = append(parts, "cell "+t.CellIP.String(), "device "+device)
	if c := started.Container; c != "" {
		parts = append(parts, "container "+wire.ClipMessage(c))
	}
	return strings.Join(parts, ", ")
}

func (t AppInstance) label() string {
	if t.AppName != "" {
		return t.AppName
	}
	return t.AppGUID
}

func (t AppInstance) findAgent(agents Agents) (Agent, *InstanceError) {
	agent, ok := agents.Lookup(t.CellIP)
	if !ok {
		return nil, t.fail(http.StatusServiceUnavailable, "no agent connected for cell %s", t.CellIP)
	}
	return agent, nil
}

func (t AppInstance) fill(req *wire.CaptureRequest) {
	req.AppGUID, req.ProcessType, req.Index, req.InstanceGUID = t.AppGUID, t.ProcessType, t.Index, t.InstanceGUID
}

func (t AppInstance) fail(status int, format string, args ...any) *InstanceError {
	return &InstanceError{Instance: t.Instance(), Status: status, Message: fmt.Sprintf(format, args...)}
}

// VM is an instance of a BOSH deployment, captured on its own devices
// (a host capture), as the director lists it.
type VM struct {
	Deployment string
	Group      string
	Index      int
	ID         string
	AZ         string
	IPs        []netip.Addr
	// Unavailable, when set, says why the instance cannot be captured
	// (the director lists no VM for it): it is named in
	// Pcap-Instance-Errors with status 409.
	Unavailable string
}

func (t VM) Instance() string { return fmt.Sprintf("%s/%d", t.Group, t.Index) }

func (t VM) Where() string {
	ips := make([]string, len(t.IPs))
	for i, ip := range t.IPs {
		ips[i] = ip.String()
	}
	return fmt.Sprintf("VM %s (%s)", t.Instance(), strings.Join(ips, ", "))
}

// InterfaceName is GROUP/INDEX/DEVICE, also for one device: a VM's
// devices are its own, and which one a packet crossed is what an
// operator asks first.
func (t VM) InterfaceName(device string, _ bool) string {
	return t.Instance() + "/" + device
}

func (t VM) InterfaceDescription(device string, _ *wire.Started) string {
	parts := []string{"deployment " + t.Deployment, "instance " + t.Instance(), "id " + t.ID}
	if t.AZ != "" {
		parts = append(parts, "az "+t.AZ)
	}
	for _, ip := range t.IPs {
		parts = append(parts, "IP "+ip.String())
	}
	return strings.Join(append(parts, "device "+device), ", ")
}

// findAgent picks the agent that is this VM: registered under one of the
// director's IPs for it (the tunnel accepted that IP only as the
// connection's source address) and naming the director's instance id in
// its hello. An agent at the right address with another identity is not
// used: the VM's agent is misconfigured, or it is another VM's address
// now.
func (t VM) findAgent(agents Agents) (Agent, *InstanceError) {
	switch {
	case t.Unavailable != "":
		return nil, t.fail(http.StatusConflict, "%s", t.Unavailable)
	case len(t.IPs) == 0:
		return nil, t.fail(http.StatusConflict, "the director lists no IP address for instance %s (%s)", t.Instance(), t.ID)
	}
	var mismatch *InstanceError
	for _, ip := range t.IPs {
		agent, ok := agents.Lookup(ip)
		if !ok {
			continue
		}
		if !agent.Speaks(wire.HostVersion) {
			return nil, t.fail(http.StatusBadGateway, "the agent on %s is too old to capture its VM (host captures need protocol version %d): update the pcap-server release on it", t.Where(), wire.HostVersion)
		}
		id := agent.Identity()
		switch {
		case id == nil:
			mismatch = t.fail(http.StatusBadGateway, "the agent at %s has no BOSH identity (its job renders no bosh properties), so it cannot be taken for instance %s (%s)", ip, t.Instance(), t.ID)
		case id.ID != t.ID || id.Deployment != t.Deployment:
			mismatch = t.fail(http.StatusBadGateway, "identity mismatch: the agent at %s says it is instance %s/%s (%s) of deployment %s, but the director lists %s (%s) of %s there",
				ip, wire.ClipMessage(id.InstanceGroup), wire.ClipMessage(strconv.Itoa(id.Index)), wire.ClipMessage(id.ID), wire.ClipMessage(id.Deployment), t.Instance(), t.ID, t.Deployment)
		default:
			return agent, nil
		}
	}
	if mismatch != nil {
		return nil, mismatch
	}
	return nil, t.fail(http.StatusServiceUnavailable, "no agent connected for %s: is the pcap-server job on it, with host capture (the runtime config)?", t.Where())
}

func (t VM) fill(req *wire.CaptureRequest) {
	req.Target = wire.TargetHost
	req.Bosh = &wire.BoshInstance{Deployment: t.Deployment, InstanceGroup: t.Group, ID: t.ID, Index: t.Index, AZ: t.AZ}
}

func (t VM) fail(status int, format string, args ...any) *InstanceError {
	return &InstanceError{Instance: t.Instance(), Status: status, Message: fmt.Sprintf(format, args...)}
}
