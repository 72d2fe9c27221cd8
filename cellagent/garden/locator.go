// Package garden finds the container a capture request names on this
// cell and its network namespace. It asks garden over its HTTP API, by
// handle (the instance guid) or by the properties Diego sets (app guid,
// owner, workload, and the instance index in log_config), then looks for
// the namespace where garden-cni and runc leave it.
package garden

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agent"
	"github.com/cloudfoundry/pcap-server-release/wire"
)

// Config holds the agent configuration's values for the lookup.
type Config struct {
	// Network ("unix" or "tcp") and Address (socket path or host:port)
	// of garden: garden.network and garden.address.
	Network string
	Address string
	// ContainerNetnsDir holds garden-cni's bind mount of each container's
	// network namespace, named by handle; empty skips it.
	ContainerNetnsDir string
	// RuncRoots are searched in order for HANDLE/state.json.
	RuncRoots []string
	// ContainerOwnerName is the executor:owner property of app
	// containers, the rep's container_owner_name (empty: executor).
	ContainerOwnerName string
	// CallTimeout bounds each garden request (0: DefaultCallTimeout).
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// Locator finds containers through garden. It implements agent.Locator
// and is safe for concurrent use.
type Locator struct {
	client *Client
	netns  netnsFinder
	owner  string
	log    *slog.Logger
}

var _ agent.Locator = (*Locator)(nil)

// New returns a Locator. It does not contact garden: the agent must start
// (and report its lookups as failing) while garden is down.
func New(c Config) (*Locator, error) {
	client, err := NewClient(c.Network, c.Address, c.CallTimeout)
	if err != nil {
		return nil, err
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	owner := c.ContainerOwnerName
	if owner == "" {
		owner = ownerExecutor
	}
	return &Locator{
		client: client,
		netns:  netnsFinder{netnsDir: c.ContainerNetnsDir, runcRoots: slices.Clone(c.RuncRoots)},
		owner:  owner,
		log:    log,
	}, nil
}

// Close drops idle garden connections.
func (l *Locator) Close() { l.client.Close() }

// Ping checks that garden answers; failures are *agent.LocateError with
// wire.ErrGardenUnavailable, worded like lookup failures.
func (l *Locator) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx); err != nil {
		return l.gardenFailure("answer a ping", err)
	}
	return nil
}

// Locate finds the container of req and its network namespace. Failures
// are *agent.LocateError: wire.ErrContainerNotFound, ErrGardenUnavailable,
// ErrNoNetns (also when the namespace is the host's), ErrBadRequest, or
// ErrInternal when several containers claim the same instance.
func (l *Locator) Locate(ctx context.Context, req *wire.CaptureRequest) (agent.Container, error) {
	log := l.log.With("app_guid", req.AppGUID, "index", req.Index)
	if req.ProcessType != "" {
		log = log.With("process_type", req.ProcessType)
	}
	var handle string
	var props map[string]string
	var err error
	if req.InstanceGUID != "" {
		handle, props, err = l.byHandle(ctx, req)
	} else {
		handle, props, err = l.byInstance(ctx, req, log)
	}
	if err != nil {
		log.Debug("container lookup failed", "instance_guid", req.InstanceGUID, "error", err)
		return agent.Container{}, err
	}
	log = log.With("handle", handle)
	path, source, err := l.netns.find(handle)
	if err != nil {
		var hostErr *HostNetnsError
		var noErr *NoNetnsError
		switch {
		case errors.As(err, &hostErr):
			log.Warn("refusing a container whose network namespace is the host's", "netns", hostErr.Path, "netns_source", hostErr.Source)
			return agent.Container{}, &agent.LocateError{Code: wire.ErrNoNetns,
				Msg: fmt.Sprintf("refusing to capture container %s: its network namespace %s (from the %s) is the cell's host namespace", handle, hostErr.Path, hostErr.Source), Err: err}
		case errors.As(err, &noErr):
			log.Info("no network namespace for container", "tried", noErr.Tried)
			return agent.Container{}, &agent.LocateError{Code: wire.ErrNoNetns, Msg: err.Error(), Err: err}
		default:
			return agent.Container{}, &agent.LocateError{Code: wire.ErrInternal,
				Msg: fmt.Sprintf("cannot check the network namespace of container %s: %v", handle, err), Err: err}
		}
	}
	c := agent.Container{Handle: handle, NetnsPath: path, Interface: containerInterface(props)}
	end, err := l.netns.watchEnd(handle)
	switch {
	case errors.Is(err, errInitExited):
		log.Info("container ended while it was looked up", "error", err)
		return agent.Container{}, &agent.LocateError{Code: wire.ErrContainerNotFound,
			Msg: fmt.Sprintf("no container of app %s instance %d on this cell: container %s has ended (%v)", req.AppGUID, req.Index, handle, err), Err: err}
	case err != nil:
		log.Warn("cannot watch the container's end: a capture ends only when its interface goes", "error", err)
	case end == nil:
		log.Info("no runc state names the container's init process: a capture ends only when its interface goes", "runc_roots", l.netns.runcRoots)
	default:
		c.End = end
	}
	log.Info("container located", "netns", path, "netns_source", source, "interface", c.Interface, "watched", c.End != nil)
	return c, nil
}

// byHandle checks that the container named by the instance guid exists
// and, when the request names an app, belongs to it.
func (l *Locator) byHandle(ctx context.Context, req *wire.CaptureRequest) (string, map[string]string, error) {
	h := req.InstanceGUID
	if !validHandle(h) {
		return "", nil, &agent.LocateError{Code: wire.ErrBadRequest, Msg: fmt.Sprintf("instance guid %q is not a garden handle", h)}
	}
	props, err := l.client.Properties(ctx, h)
	if IsContainerNotFound(err) {
		msg := fmt.Sprintf("no container of app %s instance %d on this cell (instance guid %s)", req.AppGUID, req.Index, h)
		if req.AppGUID == "" {
			msg = fmt.Sprintf("no container with instance guid %s on this cell", h)
		}
		return "", nil, &agent.LocateError{Code: wire.ErrContainerNotFound, Msg: msg, Err: err}
	}
	if err != nil {
		return "", nil, l.gardenFailure("read the properties of container "+h, err)
	}
	// The API names the app it authorized the user for; never hand out
	// another app's container, whatever the instance guid says.
	// A container without these properties is no Diego app instance.
	if props[propAppID] != req.AppGUID || props[propOwner] != l.owner {
		return "", nil, &agent.LocateError{Code: wire.ErrContainerNotFound, Msg: fmt.Sprintf("container %s on this cell is not an instance of app %s", h, req.AppGUID)}
	}
	return h, props, nil
}

// byInstance lists the app's containers and picks the one whose
// log_config has the requested index (and process type).
func (l *Locator) byInstance(ctx context.Context, req *wire.CaptureRequest, log *slog.Logger) (string, map[string]string, error) {
	if req.AppGUID == "" {
		return "", nil, &agent.LocateError{Code: wire.ErrBadRequest, Msg: "the capture request names neither an instance guid nor an app"}
	}
	handles, err := l.client.Containers(ctx, map[string]string{
		propAppID:    req.AppGUID,
		propOwner:    l.owner,
		propWorkload: workloadApp,
	})
	if err != nil {
		return "", nil, l.gardenFailure("list the containers of app "+req.AppGUID, err)
	}
	slices.Sort(handles)
	var matched []string
	var matchedProps map[string]string // of the first
	var others []string                // the app's other containers, for the message
	for _, h := range handles {
		if !validHandle(h) {
			log.Warn("garden listed a handle that is not one", "handle", h)
			continue
		}
		props, err := l.client.Properties(ctx, h)
		if IsContainerNotFound(err) {
			continue // destroyed since it was listed
		}
		if err != nil {
			return "", nil, l.gardenFailure("read the properties of container "+h, err)
		}
		if props[propAppID] != req.AppGUID {
			log.Warn("garden listed a container of another app", "handle", h, "network.app_id", props[propAppID])
			continue
		}
		lc, err := parseLogConfig(props[propLogConfig])
		if err != nil {
			log.Debug("skipping container without a usable log_config", "handle", h, "error", err)
			continue
		}
		if lc.matches(req.Index, req.ProcessType) {
			if matched == nil {
				matchedProps = props
			}
			matched = append(matched, h)
		} else {
			others = append(others, lc.String())
		}
	}
	switch len(matched) {
	case 1:
		return matched[0], matchedProps, nil
	case 0:
		msg := fmt.Sprintf("no container of app %s instance %d on this cell", req.AppGUID, req.Index)
		var detail []string
		if req.ProcessType != "" {
			detail = append(detail, "process type "+req.ProcessType)
		}
		if len(others) > 0 {
			slices.Sort(others)
			detail = append(detail, "instances of the app here: "+strings.Join(others, ", "))
		}
		if len(detail) > 0 {
			msg += " (" + strings.Join(detail, "; ") + ")"
		}
		return "", nil, &agent.LocateError{Code: wire.ErrContainerNotFound, Msg: msg}
	default:
		log.Warn("several containers claim the same instance", "handles", matched)
		return "", nil, &agent.LocateError{Code: wire.ErrInternal,
			Msg: fmt.Sprintf("%d containers on this cell claim to be app %s instance %d: %s", len(matched), req.AppGUID, req.Index, strings.Join(matched, ", "))}
	}
}

// gardenFailure turns a failed garden request into the user's message:
// which garden, and why.
func (l *Locator) gardenFailure(doing string, err error) *agent.LocateError {
	where := l.client.Where()
	var ge *Error
	var oe *net.OpError
	var msg string
	switch {
	case errors.As(err, &ge):
		msg = fmt.Sprintf("garden on %s could not %s: %s", where, doing, ge)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("garden on %s did not answer in time to %s", where, doing)
	case errors.Is(err, context.Canceled):
		msg = fmt.Sprintf("container lookup canceled while asking garden on %s to %s", where, doing)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		msg = fmt.Sprintf("garden on %s closed the connection instead of answering (asked to %s)", where, doing)
	case errors.As(err, &oe) && oe.Op == "dial":
		msg = fmt.Sprintf("garden is unreachable on %s: %v", where, oe.Err)
	default:
		msg = fmt.Sprintf("garden on %s failed to %s: %v", where, doing, err)
	}
	return &agent.LocateError{Code: wire.ErrGardenUnavailable, Msg: msg, Err: err}
}

// validHandle accepts what can name a file in a directory: garden handles
// are instance guids, but they also become path elements here.
func validHandle(h string) bool {
	return h != "" && len(h) <= 255 && h != "." && h != ".." && !strings.ContainsAny(h, "/\x00")
}
