package boshrelease

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed render.rb
var renderScript []byte

// Instance is what the director tells a template about the VM it renders
// for (spec.*).
type Instance struct {
	ID         string `json:"id"`
	IP         string `json:"ip"`
	Name       string `json:"name"` // the instance group
	Index      int    `json:"index"`
	Deployment string `json:"deployment"`
	Address    string `json:"address"`
	AZ         string `json:"az"`
	Bootstrap  bool   `json:"bootstrap"`
	// DNSDomainName is the director's DNS domain (spec.dns_domain_name);
	// empty renders as "bosh", the director's default.
	DNSDomainName string `json:"dns_domain_name,omitempty"`
}

// Link is a consumed link as templates see it (link("name")).
type Link struct {
	Address    string         `json:"address,omitempty"`
	Instances  []Instance     `json:"instances"`
	Properties map[string]any `json:"properties"`
}

// RenderRequest names a job, the manifest properties of its instance group
// entry and the instance it renders for.
type RenderRequest struct {
	JobDir     string
	OutDir     string
	Properties map[string]any
	Instance   Instance
	Links      map[string]Link
}

// Render renders every template of the job with Debian's ruby, as the
// director would: each lands in OutDir at the destination its spec names.
// A template that fails (a missing required property, a raise) makes the
// error carry the director-style message naming the template and property.
func Render(ctx context.Context, req RenderRequest) error {
	input, err := json.Marshal(map[string]any{
		"job_dir":    req.JobDir,
		"out_dir":    req.OutDir,
		"properties": orEmpty(req.Properties),
		"spec":       req.Instance,
		"links":      req.Links,
	})
	if err != nil {
		return fmt.Errorf("encode render input: %w", err)
	}
	f, err := os.CreateTemp("", "bosh-render-*.json")
	if err != nil {
		return fmt.Errorf("render input file: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(input); err != nil {
		f.Close()
		return fmt.Errorf("write render input: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write render input: %w", err)
	}

	cmd := exec.CommandContext(ctx, "ruby", "-", f.Name())
	cmd.Stdin = bytes.NewReader(renderScript)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("render job %s: %w: %s", filepath.Base(req.JobDir), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
