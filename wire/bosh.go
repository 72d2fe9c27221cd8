package wire

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// BoshInstance is a BOSH VM's identity (version 3): in an agent's Hello,
// what its job spec says the VM is; in a host CaptureRequest, the VM the
// API means to capture.
type BoshInstance struct {
	Deployment    string `json:"deployment"`
	InstanceGroup string `json:"instance_group"`
	// ID is the instance's id (spec.id), a UUID: what the director's
	// instance list calls id.
	ID    string `json:"id"`
	Index int    `json:"index"`
	AZ    string `json:"az,omitempty"`
}

// maxBoshName bounds each name of a BoshInstance: BOSH's names are short,
// and they end up in headers, logs and pcapng interface names.
const maxBoshName = 128

// Validate checks that the identity names a VM: deployment, instance
// group and id set, printable and short, the index not negative.
func (b *BoshInstance) Validate() error {
	for _, f := range []struct {
		key, v   string
		required bool
	}{
		{"deployment", b.Deployment, true},
		{"instance_group", b.InstanceGroup, true},
		{"id", b.ID, true},
		{"az", b.AZ, false},
	} {
		switch {
		case f.v == "" && f.required:
			return fmt.Errorf("bosh.%s is empty", f.key)
		case len(f.v) > maxBoshName:
			return fmt.Errorf("bosh.%s is %d characters long, at most %d", f.key, len(f.v), maxBoshName)
		case strings.ContainsFunc(f.v, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == '/' }):
			return fmt.Errorf("bosh.%s %q contains a space, a slash or a control character", f.key, f.v)
		}
	}
	if b.Index < 0 {
		return fmt.Errorf("bosh.index %d is negative", b.Index)
	}
	return nil
}

// Slug is GROUP/INDEX, as BOSH names an instance to people.
func (b *BoshInstance) Slug() string { return fmt.Sprintf("%s/%d", b.InstanceGroup, b.Index) }

// TargetKind says what a CaptureRequest captures (version 3).
type TargetKind string

const (
	// TargetApp (or empty, as in versions 1 and 2) is an app's container,
	// found through the container runtime.
	TargetApp TargetKind = "app"
	// TargetHost is the VM itself: devices in the agent's own network
	// namespace. Agents refuse it unless host capture is enabled.
	TargetHost TargetKind = "host"
)

// Host reports whether the request captures the VM itself.
func (r *CaptureRequest) Host() bool { return r.Target == TargetHost }

// validateTarget checks the fields of the request's kind of target.
func (r *CaptureRequest) validateTarget() error {
	switch r.Target {
	case "", TargetApp:
		switch {
		case r.Bosh != nil:
			return errors.New("an app capture request names a BOSH instance")
		case r.AppGUID == "" && r.InstanceGUID == "":
			return errors.New("capture request names no container: app_guid and instance_guid are empty")
		}
	case TargetHost:
		switch {
		case r.Bosh == nil:
			return errors.New("a host capture request names no BOSH instance")
		case r.AppGUID != "" || r.InstanceGUID != "" || r.ProcessType != "":
			return errors.New("a host capture request names an app")
		}
		if err := r.Bosh.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("target %q: want %s or %s", clipText(string(r.Target)), TargetApp, TargetHost)
	}
	return nil
}

// clipText shortens untrusted text for an error message.
func clipText(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
