package apimetrics

import "testing"

// Endpoint classes are a fixed set, whatever the GUIDs in the path.
func TestEndpointClass(t *testing.T) {
	for path, want := range map[string]string{
		"/": "root",
		"/v3/apps/6a3c0f6e-1111-4222-8333-444455556666": "apps",
		"/v3/apps": "apps",
		"/v3/apps/6a3c0f6e-1111-4222-8333-444455556666/ssh_enabled":         "ssh_enabled",
		"/v3/apps/6a3c0f6e-1111-4222-8333-444455556666/processes/web/stats": "process_stats",
		"/v3/roles":   "roles",
		"/token_keys": "token_keys",
		"/oauth/token/.well-known/openid-configuration": "discovery",
		"/v3/spaces/x": "other",
	} {
		if got := EndpointClass(path); got != want {
			t.Errorf("EndpointClass(%q) = %q, want %q", path, got, want)
		}
	}
}
