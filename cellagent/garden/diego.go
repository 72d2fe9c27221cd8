package garden

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Properties Diego's executor sets on an app instance's container.
const (
	propAppID     = "network.app_id"
	propOwner     = "executor:owner"
	propWorkload  = "network.container_workload"
	propLogConfig = "log_config"

	// ownerExecutor is the rep's default container_owner_name.
	ownerExecutor = "executor"
	workloadApp   = "app"
)

// maxLogConfig bounds the log_config property: a few hundred bytes of
// guid, index and tags in practice.
const maxLogConfig = 64 << 10

// logConfig is what the agent reads of the log_config property, a JSON
// string {"guid":APP,"index":N,"source_name":"CELL","tags":{...}}.
type logConfig struct {
	Index int
	// ProcessType is tags.process_type, empty when absent.
	ProcessType string
}

// parseLogConfig reads the instance index and process type out of a
// log_config property. The index is required: a container without one
// cannot be told apart from instance 0.
func parseLogConfig(s string) (logConfig, error) {
	if len(s) > maxLogConfig {
		return logConfig{}, fmt.Errorf("log_config is %d bytes, at most %d", len(s), maxLogConfig)
	}
	var raw struct {
		Index *int           `json:"index"`
		Tags  map[string]any `json:"tags"`
	}
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return logConfig{}, fmt.Errorf("log_config: %w", err)
	}
	if raw.Index == nil {
		return logConfig{}, errors.New("log_config has no index")
	}
	if *raw.Index < 0 {
		return logConfig{}, fmt.Errorf("log_config index %d is negative", *raw.Index)
	}
	lc := logConfig{Index: *raw.Index}
	if pt, ok := raw.Tags["process_type"].(string); ok {
		lc.ProcessType = pt
	}
	return lc, nil
}

// matches reports whether a container with this log_config is instance
// index of processType. A container without a process_type tag (older
// Cloud Controllers) matches any process type; an empty processType
// matches any container.
func (lc logConfig) matches(index int, processType string) bool {
	if lc.Index != index {
		return false
	}
	return processType == "" || lc.ProcessType == "" || lc.ProcessType == processType
}

// String is how the locator names an instance in messages: TYPE/INDEX,
// or INDEX without a process type.
func (lc logConfig) String() string {
	if lc.ProcessType == "" {
		return strconv.Itoa(lc.Index)
	}
	return lc.ProcessType + "/" + strconv.Itoa(lc.Index)
}
