package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Message is a control message: every frame type but Packets.
type Message interface {
	Type() Type
}

// Hello opens the control stream (agent → API).
type Hello struct {
	MinVersion   int    `json:"min_version"`
	MaxVersion   int    `json:"max_version"`
	AgentID      string `json:"agent_id"`
	AgentVersion string `json:"agent_version"`
	// RunID is random per agent process: a second session of a running
	// agent (the same replica reached through another address) is
	// refused as a duplicate, while a restarted agent replaces its old
	// session.
	RunID       string   `json:"run_id,omitempty"`
	CellIPs     []string `json:"cell_ips"`
	MaxCaptures int      `json:"max_captures"`
	// Bosh is the VM's BOSH identity from the agent's job spec (version
	// 3): the API sends a host capture of a director's instance only to
	// the agent whose connection comes from that instance's IP and whose
	// Bosh.ID is that instance's id. Absent: the agent cannot be asked
	// for host captures.
	Bosh *BoshInstance `json:"bosh,omitempty"`
	// HostCapture says the agent's operator enabled host capture (version
	// 3). Informational: the agent refuses host requests itself when it
	// is off.
	HostCapture bool `json:"host_capture,omitempty"`
}

// Welcome accepts a Hello (API → agent).
type Welcome struct {
	Version    int    `json:"version"`
	APIID      string `json:"api_id"`
	APIVersion string `json:"api_version"`
	// CellIPs are the claimed addresses the API registered the session
	// under; claims it did not accept are missing.
	CellIPs []string `json:"cell_ips"`
}

// Refused rejects a Hello; the API closes the session after sending it.
type Refused struct {
	Reason     RefusalReason `json:"reason"`
	Message    string        `json:"message"`
	MinVersion int           `json:"min_version,omitempty"`
	MaxVersion int           `json:"max_version,omitempty"`
}

// RefusalReason says why a Hello was refused.
type RefusalReason string

const (
	RefusedVersion  RefusalReason = "unsupported_version"
	RefusedIdentity RefusalReason = "identity"
	RefusedInvalid  RefusalReason = "invalid_hello"
	RefusedDraining RefusalReason = "draining"
	// RefusedDuplicate: this agent process already has a session with
	// this API replica. The agent keeps the one it has.
	RefusedDuplicate RefusalReason = "duplicate"
)

// CaptureRequest starts a capture of one container, or of the VM itself
// (API → agent).
type CaptureRequest struct {
	CaptureID string `json:"capture_id"`
	// Target is what to capture (version 3): an app's container (empty
	// or TargetApp) or the VM itself (TargetHost, with Bosh). Older
	// agents ignore the field, so an API sends host requests only to
	// agents of version 3.
	Target TargetKind `json:"target,omitempty"`
	// Bosh names the VM of a host capture: the agent refuses the request
	// unless it is this agent's own identity.
	Bosh *BoshInstance `json:"bosh,omitempty"`
	// The container: by InstanceGUID (the garden handle) when the Cloud
	// Controller reported it, otherwise by app GUID, process type and index.
	AppGUID      string `json:"app_guid"`
	ProcessType  string `json:"process_type,omitempty"`
	Index        int    `json:"index"`
	InstanceGUID string `json:"instance_guid,omitempty"`

	Device string `json:"device"`
	// Devices, when set (version 2), names every device of a capture of
	// several: at most MaxDevices, distinct. The agent then captures each
	// on the one stream, answers Started.Devices, sends DevicePackets
	// frames and counts Stats.Devices, all by the index of the device in
	// this list; Device is ignored (the API sets it to the first). Without
	// Devices, or with a list of one, the capture is of that one device
	// and answered as in version 1.
	Devices []string `json:"devices,omitempty"`
	Filter  string   `json:"filter,omitempty"`
	Snaplen int      `json:"snaplen"`
	// Duration and MaxPackets bound the capture on the agent's side too,
	// so that a capture ends even if the API forgets it. Zero: no bound.
	DurationMillis int64  `json:"duration_ms,omitempty"`
	MaxPackets     uint64 `json:"max_packets,omitempty"`
	// Owner is who asked for the capture (the token's subject), so that a
	// stop arriving through another API replica can be checked against
	// it. Version 2; older agents ignore it.
	Owner string `json:"owner,omitempty"`
}

// MaxFilterLength bounds the BPF filter text, as the HTTP API does.
const MaxFilterLength = 5000

// Duration is DurationMillis as a time.Duration.
func (r *CaptureRequest) Duration() time.Duration {
	return time.Duration(r.DurationMillis) * time.Millisecond
}

// DeviceList is the devices to capture: Devices, or Device alone.
func (r *CaptureRequest) DeviceList() []string {
	if len(r.Devices) > 0 {
		return r.Devices
	}
	return []string{r.Device}
}

// Validate checks what the agent can check without libpcap.
func (r *CaptureRequest) Validate() error {
	if err := ValidateDevices(r.DeviceList()); err != nil {
		return err
	}
	if err := r.validateTarget(); err != nil {
		return err
	}
	switch {
	case r.Index < 0:
		return fmt.Errorf("instance index %d is negative", r.Index)
	case r.Snaplen < 1 || r.Snaplen > MaxSnaplen:
		return fmt.Errorf("snaplen %d is outside 1..%d", r.Snaplen, MaxSnaplen)
	case len(r.Filter) > MaxFilterLength:
		return fmt.Errorf("filter is %d characters long, maximum %d", len(r.Filter), MaxFilterLength)
	case r.DurationMillis < 0:
		return fmt.Errorf("duration %dms is negative", r.DurationMillis)
	}
	return nil
}

// ValidateDevices checks a capture's devices: one to MaxDevices valid
// interface names, none twice.
func ValidateDevices(devices []string) error {
	if len(devices) == 0 || len(devices) > MaxDevices {
		return fmt.Errorf("%d devices, want 1 to %d", len(devices), MaxDevices)
	}
	for i, d := range devices {
		if !ValidDevice(d) {
			return fmt.Errorf("device %q is not a valid interface name", d)
		}
		if slices.Contains(devices[:i], d) {
			return fmt.Errorf("device %s is named twice", d)
		}
	}
	return nil
}

// ValidDevice reports whether name can be a Linux interface name (at most
// 15 bytes, no slash, no whitespace, not "." or "..").
func ValidDevice(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/: \t\n\x00")
}

// Started says the capture runs (agent → API).
type Started struct {
	// LinkType is libpcap's DLT of the capture (1 for Ethernet).
	LinkType int    `json:"link_type"`
	Snaplen  int    `json:"snaplen"`
	Device   string `json:"device"`
	// Container is the garden handle of the captured container, for logs.
	Container string `json:"container,omitempty"`
	// Devices answers a request with CaptureRequest.Devices (version 2):
	// one entry per requested device, in the request's order, each
	// started or failed. At least one has started (otherwise the agent
	// answers Error); LinkType and Device above are then the first
	// started one's.
	Devices []DeviceStart `json:"devices,omitempty"`
}

// DeviceStart is how one device of a capture of several started.
type DeviceStart struct {
	Device string `json:"device"`
	// LinkType is libpcap's DLT of the device's capture; 0 when Error
	// says why the device could not be captured.
	LinkType int    `json:"link_type,omitempty"`
	Error    *Error `json:"error,omitempty"`
}

// Error refuses a CaptureRequest (agent → API) with a typed reason.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// ErrorCode classifies an Error so that the API can choose an HTTP status.
type ErrorCode string

const (
	ErrBadRequest        ErrorCode = "bad_request"         // invalid request fields
	ErrBadFilter         ErrorCode = "bad_filter"          // libpcap could not compile the filter
	ErrNoSuchDevice      ErrorCode = "no_such_device"      // the device does not exist in the container
	ErrContainerNotFound ErrorCode = "container_not_found" // no such container on this cell
	ErrNoNetns           ErrorCode = "no_netns"            // container found, its network namespace not
	ErrGardenUnavailable ErrorCode = "garden_unavailable"  // the container runtime did not answer
	ErrLimit             ErrorCode = "limit"               // the agent runs its maximum of captures
	ErrDraining          ErrorCode = "draining"            // the agent is shutting down
	ErrInternal          ErrorCode = "internal"            // anything else; the message says what
	// Version 3, host captures only.
	ErrHostCaptureDisabled ErrorCode = "host_capture_disabled" // the operator has not enabled host capture on this VM
	ErrWrongInstance       ErrorCode = "wrong_instance"        // the request names another VM than this agent's
)

// Stats are cumulative counters of one capture (agent → API), sent
// periodically and in End.
type Stats struct {
	Counters
	// Devices are the counters of each device of a capture of several
	// (version 2), in the request's order; Counters are their sums, for
	// readers of version 1.
	Devices []Counters `json:"devices,omitempty"`
}

// Counters are a capture's (or one device's) cumulative counters.
type Counters struct {
	// Packets and Bytes were handed to the API (Bytes counts captured bytes).
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// KernelDropped is libpcap's ps_drop: lost because the ring was full.
	KernelDropped uint64 `json:"kernel_dropped"`
	// InterfaceDropped is libpcap's ps_ifdrop: dropped by the interface.
	InterfaceDropped uint64 `json:"interface_dropped"`
	// AgentDropped were read from libpcap but found the agent's buffer full.
	AgentDropped uint64 `json:"agent_dropped"`
}

// Add adds o's counters to c.
func (c *Counters) Add(o Counters) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.KernelDropped += o.KernelDropped
	c.InterfaceDropped += o.InterfaceDropped
	c.AgentDropped += o.AgentDropped
}

// Stop asks the agent to end the capture (API → agent). The agent drains
// what libpcap still holds, sends it and then End.
type Stop struct {
	Reason EndReason `json:"reason"`
}

// StopCapture asks the agent to stop a capture that another API replica
// streams (API → agent, version 2): the first and only frame the API
// sends on a stop stream. The agent stops, draining, every stream of the
// capture it runs for that app, if the requester owns it or is an admin.
type StopCapture struct {
	CaptureID string `json:"capture_id"`
	AppGUID   string `json:"app_guid"`
	// Target and Deployment (version 3) stop a host capture: the agent
	// stops the capture's streams of that deployment's VM instead of an
	// app's. AppGUID is then empty.
	Target     TargetKind `json:"target,omitempty"`
	Deployment string     `json:"deployment,omitempty"`
	// Requester is the subject of the token that asks; Admin says it
	// carries the admin scope. The API has verified both.
	Requester string `json:"requester"`
	Admin     bool   `json:"admin,omitempty"`
}

// StopResult answers StopCapture (agent → API, version 2).
type StopResult struct {
	Outcome StopOutcome `json:"outcome"`
	// Streams is how many streams of the capture the agent is stopping.
	Streams int `json:"streams,omitempty"`
}

// StopOutcome says what came of a StopCapture.
type StopOutcome string

const (
	StopStopping  StopOutcome = "stopping"
	StopNotFound  StopOutcome = "not_found" // no such capture of that app on this agent
	StopForbidden StopOutcome = "forbidden" // the capture belongs to someone else
)

// End is the last frame of a capture stream (agent → API).
type End struct {
	Reason  EndReason `json:"reason"`
	Message string    `json:"message,omitempty"`
	Stats   Stats     `json:"stats"`
}

// EndReason says why a capture ended. The values are the ones the HTTP API
// reports in its Pcap-End-Reason trailer.
type EndReason string

const (
	EndRequested     EndReason = "requested"
	EndDuration      EndReason = "duration"
	EndPackets       EndReason = "packets"
	EndMaxBytes      EndReason = "max_bytes"
	EndClientGone    EndReason = "client_gone"
	EndAgentLost     EndReason = "agent_lost"
	EndAgentDraining EndReason = "agent_draining"
	EndAPIDraining   EndReason = "api_draining"
	EndContainerGone EndReason = "container_gone"
	EndError         EndReason = "error"
)

// Valid reports whether r is one of the reasons above.
func (r EndReason) Valid() bool {
	switch r {
	case EndRequested, EndDuration, EndPackets, EndMaxBytes, EndClientGone, EndAgentLost,
		EndAgentDraining, EndAPIDraining, EndContainerGone, EndError:
		return true
	}
	return false
}

func (*Hello) Type() Type          { return TypeHello }
func (*Welcome) Type() Type        { return TypeWelcome }
func (*Refused) Type() Type        { return TypeRefused }
func (*CaptureRequest) Type() Type { return TypeCaptureRequest }
func (*Started) Type() Type        { return TypeStarted }
func (*Error) Type() Type          { return TypeError }
func (*Stats) Type() Type          { return TypeStats }
func (*Stop) Type() Type           { return TypeStop }
func (*End) Type() Type            { return TypeEnd }
func (*StopCapture) Type() Type    { return TypeStopCapture }
func (*StopResult) Type() Type     { return TypeStopResult }

// Marshal encodes a control message's payload. The free text of an
// agent's answers (messages, the container) is clipped to MaxMessage, so
// that they fit in MaxControlPayload; m itself is left as it is.
func Marshal(m Message) ([]byte, error) {
	p, err := json.Marshal(clipped(m))
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Type(), err)
	}
	limit := MaxPayload
	if isAnswer(m.Type()) {
		limit = MaxControlPayload
	}
	if len(p) > limit {
		return nil, fmt.Errorf("encode %s: %w: %d bytes, maximum %d", m.Type(), ErrFrameTooLarge, len(p), limit)
	}
	return p, nil
}

// isAnswer reports whether t is a control frame an agent sends on a
// capture stream, bound by MaxControlPayload.
func isAnswer(t Type) bool {
	switch t {
	case TypeStarted, TypeError, TypeStats, TypeEnd:
		return true
	}
	return false
}

// MaxMessage is the longest free text (an error's or an end's message,
// the container) an agent's answer carries; ClipMessage shortens a longer
// one.
const MaxMessage = 512

// ClipMessage makes s fit for a header, a log line or an answer: control
// characters become spaces, and text beyond MaxMessage bytes is cut at a
// character boundary and marked with "...". Agents are not trusted to
// keep their texts short; the API clips what it receives too.
func ClipMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxMessage {
		s = strings.ToValidUTF8(s[:MaxMessage], "") + "..."
	}
	return s
}

// clipped is m with its free text clipped, a copy where anything changes.
func clipped(m Message) Message {
	switch v := m.(type) {
	case *Error:
		c := *v
		c.Message = ClipMessage(c.Message)
		return &c
	case *End:
		c := *v
		c.Message = ClipMessage(c.Message)
		return &c
	case *Started:
		c := *v
		c.Container = ClipMessage(c.Container)
		c.Devices = slices.Clone(c.Devices)
		for i, d := range c.Devices {
			if d.Error != nil {
				c.Devices[i].Error = clipped(d.Error).(*Error)
			}
		}
		return &c
	}
	return m
}

// Decode decodes a control frame into its message. Packets frames and
// unknown types are errors here: use DecodePackets, and skip unknown types
// before calling Decode.
func Decode(f Frame) (Message, error) {
	var m Message
	switch f.Type {
	case TypeHello:
		m = new(Hello)
	case TypeWelcome:
		m = new(Welcome)
	case TypeRefused:
		m = new(Refused)
	case TypeCaptureRequest:
		m = new(CaptureRequest)
	case TypeStarted:
		m = new(Started)
	case TypeError:
		m = new(Error)
	case TypeStats:
		m = new(Stats)
	case TypeStop:
		m = new(Stop)
	case TypeEnd:
		m = new(End)
	case TypeStopCapture:
		m = new(StopCapture)
	case TypeStopResult:
		m = new(StopResult)
	default:
		return nil, fmt.Errorf("decode frame: %s is not a control message", f.Type)
	}
	if err := json.Unmarshal(f.Payload, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", f.Type, err)
	}
	return m, nil
}

// Expect reads the next known frame and decodes it as a *T, failing on
// any other type. It is how both sides read the fixed parts of a stream.
func Expect[T any, PT interface {
	*T
	Message
}](r *Reader) (PT, error) {
	want := PT(new(T)).Type()
	f, err := r.NextKnown(nil)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", want, err)
	}
	if f.Type != want {
		return nil, fmt.Errorf("read %s: got %s frame", want, f.Type)
	}
	m, err := Decode(f)
	if err != nil {
		return nil, err
	}
	return m.(PT), nil
}

// Versions this package speaks. Version 2 adds stop streams
// (StopCapture, StopResult), CaptureRequest.Owner, and captures of several
// devices (CaptureRequest.Devices, Started.Devices, Stats.Devices,
// DevicePackets frames). Version 3 adds the VM's BOSH identity
// (Hello.Bosh, Hello.HostCapture) and host captures
// (CaptureRequest.Target and Bosh, StopCapture.Target and Deployment, the
// error codes host_capture_disabled and wrong_instance).
const (
	MinVersion = 1
	MaxVersion = 3
)

// HostVersion is the first version with host captures.
const HostVersion = 3

// Negotiate picks the highest version in both ranges. It fails when the
// ranges do not overlap or a range is empty.
func Negotiate(peerMin, peerMax int) (int, error) {
	if peerMin < 1 || peerMax < peerMin {
		return 0, fmt.Errorf("invalid version range %d..%d", peerMin, peerMax)
	}
	v := min(peerMax, MaxVersion)
	if v < max(peerMin, MinVersion) {
		return 0, fmt.Errorf("peer speaks versions %d..%d, this side %d..%d", peerMin, peerMax, MinVersion, MaxVersion)
	}
	return v, nil
}

// ValidateHello checks a Hello's fields (not the version, see Negotiate).
func ValidateHello(h *Hello) error {
	switch {
	case h.AgentID == "" || len(h.AgentID) > 256:
		return errors.New("agent_id must be 1 to 256 characters")
	case len(h.CellIPs) == 0:
		return errors.New("cell_ips is empty")
	case len(h.CellIPs) > 64:
		return fmt.Errorf("%d cell_ips, at most 64", len(h.CellIPs))
	}
	for _, ip := range h.CellIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("cell_ips: %w", err)
		}
	}
	if h.Bosh != nil {
		if err := h.Bosh.Validate(); err != nil {
			return err
		}
	}
	return nil
}
