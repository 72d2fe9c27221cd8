package garden

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

func TestParseLogConfig(t *testing.T) {
	cases := []struct {
		in      string
		want    logConfig
		wantErr string
	}{
		{in: `{"guid":"app","index":3,"source_name":"CELL","tags":{"process_type":"worker","process_instance_id":"h"}}`, want: logConfig{Index: 3, ProcessType: "worker"}},
		{in: `{"guid":"app","index":0,"source_name":"CELL","tags":{}}`, want: logConfig{Index: 0}},
		{in: `{"guid":"app","index":1}`, want: logConfig{Index: 1}},
		// A tag of another type is ignored rather than failing the rest.
		{in: `{"index":1,"tags":{"process_type":7}}`, want: logConfig{Index: 1}},
		{in: `{"guid":"app","source_name":"CELL"}`, wantErr: "no index"},
		{in: `{"index":null}`, wantErr: "no index"},
		{in: `{"index":-1}`, wantErr: "negative"},
		{in: `{"index":"1"}`, wantErr: "cannot unmarshal"},
		{in: `{"index":1.5}`, wantErr: "cannot unmarshal"},
		{in: ``, wantErr: "unexpected end"},
		{in: `{"index":1,"tags":[]}`, wantErr: "cannot unmarshal"},
		{in: `{"index":1}` + strings.Repeat(" ", maxLogConfig), wantErr: "at most"},
	}
	for _, tc := range cases {
		got, err := parseLogConfig(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseLogConfig(%.60q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseLogConfig(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestLogConfigMatches(t *testing.T) {
	web1 := logConfig{Index: 1, ProcessType: "web"}
	untagged1 := logConfig{Index: 1}
	cases := []struct {
		lc    logConfig
		index int
		ptype string
		want  bool
	}{
		{web1, 1, "web", true},
		{web1, 1, "", true},
		{web1, 1, "worker", false},
		{web1, 0, "web", false},
		{untagged1, 1, "worker", true},
		{untagged1, 2, "", false},
	}
	for _, tc := range cases {
		if got := tc.lc.matches(tc.index, tc.ptype); got != tc.want {
			t.Errorf("%+v.matches(%d, %q) = %v", tc.lc, tc.index, tc.ptype, got)
		}
	}
}

func TestParseRuncState(t *testing.T) {
	cases := []struct {
		in      string
		want    runcState
		wantErr string
	}{
		{in: `{"id":"h","init_process_pid":4242,"init_process_start":987654,"namespace_paths":{"NEWNET":"/proc/4242/ns/net","NEWNS":"/proc/4242/ns/mnt"}}`,
			want: runcState{InitPID: 4242, InitStart: 987654, NetnsPath: "/proc/4242/ns/net"}},
		// runc before 1.0 wrote the start time as a string.
		{in: `{"init_process_pid":7,"init_process_start":"123"}`, want: runcState{InitPID: 7, InitStart: 123}},
		{in: `{"init_process_pid":7,"init_process_start":""}`, want: runcState{InitPID: 7}},
		{in: `{"init_process_pid":7,"init_process_start":null}`, want: runcState{InitPID: 7}},
		{in: `{"namespace_paths":{"NEWNET":"/var/vcap/data/garden-cni/container-netns/h"}}`, want: runcState{NetnsPath: "/var/vcap/data/garden-cni/container-netns/h"}},
		{in: `{"init_process_pid":0,"namespace_paths":{}}`, wantErr: "neither"},
		{in: `{}`, wantErr: "neither"},
		{in: `{"init_process_pid":-5}`, wantErr: "not a PID"},
		{in: `{"init_process_pid":99999999}`, wantErr: "not a PID"},
		{in: `{"init_process_pid":5,"namespace_paths":{"NEWNET":"proc/5/ns/net"}}`, wantErr: "absolute"},
		{in: `{"init_process_pid":5,"init_process_start":"soon"}`, wantErr: "tick count"},
		{in: `{"init_process_pid":5,"init_process_start":-1}`, wantErr: "tick count"},
		{in: `{"init_process_pid":5,"init_process_start":{}}`, wantErr: "tick count"},
		{in: `{"init_process_pid":"5"}`, wantErr: "cannot unmarshal"},
		{in: `[`, wantErr: "decode"},
	}
	for _, tc := range cases {
		got, err := parseRuncState([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseRuncState(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseRuncState(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Field 22 is 5555; the command name holds spaces and parentheses.
	line := "4242 (we) ird (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5555 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	if got, err := parseProcStat([]byte(line)); err != nil || got != 5555 {
		t.Errorf("parseProcStat = %d, %v; want 5555", got, err)
	}
	for _, bad := range []string{"", "4242 no paren S 1", "4242 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x 20"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestValidHandle(t *testing.T) {
	for _, h := range []string{"8c8a8e78-2f13-4e4b-7c2c-8f2d", "a", strings.Repeat("x", 255)} {
		if !validHandle(h) {
			t.Errorf("validHandle(%q) = false", h)
		}
	}
	for _, h := range []string{"", ".", "..", "../x", "a/b", "a\x00", strings.Repeat("x", 256)} {
		if validHandle(h) {
			t.Errorf("validHandle(%q) = true", h)
		}
	}
}

// seedLogConfigs are log_config values as Diego writes them, and broken
// ones.
var seedLogConfigs = []any{
	`{"guid":"0f2a9c3e-6a0c-4a8e-9d0b-6c1f1f3e2a11","index":0,"source_name":"CELL","tags":{"app_id":"0f2a9c3e-6a0c-4a8e-9d0b-6c1f1f3e2a11","process_instance_id":"8c8a8e78-2f13-4e4b-7c2c-8f2d","process_type":"web","source_id":"0f2a9c3e-6a0c-4a8e-9d0b-6c1f1f3e2a11"}}`,
	`{"guid":"app","index":12,"source_name":"CELL","tags":{"process_type":"worker"}}`,
	`{"guid":"app","index":3,"source_name":"CELL"}`,
	`{"index":-1}`,
	`{"index":1e3,"tags":{"process_type":null}}`,
	`{"guid":"app","index":0,"tags":"web"}`,
	`null`,
}

// seedStates are runc state.json files: runc 1.x, older runc, broken.
var seedStates = []any{
	[]byte(`{"id":"8c8a8e78-2f13-4e4b-7c2c-8f2d","init_process_pid":4242,"init_process_start":987654,"created":"2025-01-01T00:00:00Z","config":{"namespaces":[{"type":"network","path":""}]},"rootless":false,"cgroup_paths":{"":"/sys/fs/cgroup/garden/8c8a8e78-2f13-4e4b-7c2c-8f2d"},"namespace_paths":{"NEWNET":"/proc/4242/ns/net","NEWNS":"/proc/4242/ns/mnt","NEWPID":"/proc/4242/ns/pid"},"external_descriptors":["/dev/null"]}`),
	[]byte(`{"init_process_pid":17,"init_process_start":"555"}`),
	[]byte(`{"namespace_paths":{"NEWNET":"/var/vcap/data/garden-cni/container-netns/h"}}`),
	[]byte(`{"init_process_pid":-1,"init_process_start":"x"}`),
	[]byte(`{"init_process_pid":1,"init_process_start":18446744073709551616}`),
	[]byte(`{}`),
	[]byte("\xff"),
}

// seedProcStats are /proc/PID/stat lines.
var seedProcStats = []any{
	[]byte("1 (systemd) S 0 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 7 1000 100 18446744073709551615\n"),
	[]byte("4242 (a) b) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\n"),
	[]byte("9 () Z"),
}

// seedProperties are garden's answers to GET /containers/H/properties.
var seedProperties = []any{
	[]byte(`{"garden.network.interface":"eth0","garden.network.container-ip":"10.255.0.2"}`),
	[]byte(`{"kawasaki.container-interface":"wzrmuv7qetsm5-1","kawasaki.host-interface":"wzrmuv7qetsm5-0"}`),
	[]byte(`{"garden.network.interface":"eth0:1","kawasaki.container-interface":"w/1"}`),
	[]byte(`{"garden.network.interface":"012345678901234","kawasaki.container-interface":"0123456789012345"}`),
	[]byte(`null`),
	[]byte(`{"garden.network.interface":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"}`),
}

// TestSeedCorpus keeps testdata/fuzz in step with the seeds: run with
// -update-corpus after changing them.
func TestSeedCorpus(t *testing.T) {
	fuzzcorpus.Check(t, "FuzzParseLogConfig", seedLogConfigs...)
	fuzzcorpus.Check(t, "FuzzParseRuncState", seedStates...)
	fuzzcorpus.Check(t, "FuzzParseProcStat", seedProcStats...)
	fuzzcorpus.Check(t, "FuzzContainerInterface", seedProperties...)
}

func TestContainerInterface(t *testing.T) {
	for _, tc := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{"garden.network.interface": "eth0", "kawasaki.container-interface": "w1-1"}, "eth0"},
		{map[string]string{"kawasaki.container-interface": "wzrmuv7qetsm5-1"}, "wzrmuv7qetsm5-1"},
		{map[string]string{"garden.network.interface": "012345678901234"}, "012345678901234"},
		{map[string]string{"garden.network.interface": "0123456789012345"}, ""},
		{map[string]string{"garden.network.interface": "a b", "kawasaki.container-interface": "."}, ""},
		{map[string]string{"garden.network.interface": "a\x00"}, ""},
		{nil, ""},
	} {
		if got := containerInterface(tc.props); got != tc.want {
			t.Errorf("containerInterface(%v) = %q, want %q", tc.props, got, tc.want)
		}
	}
}

// FuzzParseLogConfig: log_config comes from garden properties. Parsing
// must not panic, and what it accepts must be a usable instance.
func FuzzParseLogConfig(f *testing.F) {
	for _, s := range seedLogConfigs {
		f.Add(s.(string))
	}
	f.Fuzz(func(t *testing.T, s string) {
		lc, err := parseLogConfig(s)
		if err != nil {
			return
		}
		if lc.Index < 0 {
			t.Fatalf("accepted negative index %d", lc.Index)
		}
		if !lc.matches(lc.Index, lc.ProcessType) || !lc.matches(lc.Index, "") {
			t.Fatalf("%+v does not match itself", lc)
		}
		_ = lc.String()
	})
}

// FuzzParseRuncState: state.json is written by runc, but a path the agent
// derives from it must be sane whatever the file holds.
func FuzzParseRuncState(f *testing.F) {
	for _, s := range seedStates {
		f.Add(s.([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseRuncState(data)
		if err != nil {
			return
		}
		if st.InitPID < 0 || st.InitPID > maxPID {
			t.Fatalf("accepted PID %d", st.InitPID)
		}
		if st.InitPID == 0 && st.NetnsPath == "" {
			t.Fatal("accepted a state naming no namespace")
		}
		if st.NetnsPath != "" && (st.NetnsPath[0] != '/' || strings.ContainsRune(st.NetnsPath, 0)) {
			t.Fatalf("accepted NEWNET %q", st.NetnsPath)
		}
	})
}

// FuzzParseProcStat: the command name in /proc/PID/stat is chosen by
// whoever runs the process.
func FuzzParseProcStat(f *testing.F) {
	for _, s := range seedProcStats {
		f.Add(s.([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseProcStat(data)
	})
}

// FuzzContainerInterface: the interface name a capture of eth0 opens
// comes from garden's properties; whatever they hold, the name is one
// the kernel could have given, or none.
func FuzzContainerInterface(f *testing.F) {
	for _, s := range seedProperties {
		f.Add(s.([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var props map[string]string
		if json.Unmarshal(data, &props) != nil {
			return
		}
		name := containerInterface(props)
		if name == "" {
			return
		}
		if len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\v\f\r\x00") {
			t.Fatalf("accepted interface name %q", name)
		}
		if name != props[propInterface] && name != props[propKawasakiInterface] {
			t.Fatalf("%q is in neither property of %v", name, props)
		}
	})
}
