// Package fakegarden is a fake garden server: real HTTP/1.1 on a unix
// socket (or TCP) with the routes the agent uses, Guardian's property
// filters, garden's error JSON, and containers carrying the properties
// Diego's executor sets.
package fakegarden

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/test/fakeserver"
)

// Garden endpoints, as counted by (*Garden).Requests and as keys for
// (*Garden).Inject.
const (
	Ping           = "GET /ping"
	ListContainers = "GET /containers"
	GetInfo        = "GET /containers/{handle}/info"
	GetProperties  = "GET /containers/{handle}/properties"
	// AnyEndpoint as an Inject key applies to every request.
	AnyEndpoint = ""
)

// Garden's error types, the Type of its error body.
const (
	ContainerNotFound  = "ContainerNotFoundError"
	ServiceUnavailable = "ServiceUnavailableError"
	Unrecoverable      = "UnrecoverableError"
)

// Fault changes how the fake garden answers an endpoint.
type Fault struct {
	// Delay holds the answer back; it ends early when the client goes away
	// or the server closes.
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// Status, when set, replaces the real answer: with Body if set, else
	// with garden's error JSON of Type (empty: an untyped error, as garden
	// sends for most failures) and Message.
	Status  int
	Type    string
	Message string
	Body    string
}

// AppContainer describes the container Diego's executor creates for
// one instance of an app's process.
type AppContainer struct {
	AppGUID   string
	AppName   string
	SpaceGUID string
	OrgGUID   string
	// ProcessType defaults to web; NoProcessTypeTag leaves the tag out of
	// log_config, as older Cloud Controllers do.
	ProcessType      string
	NoProcessTypeTag bool
	Index            int
	// Handle is the instance guid; a random one when empty.
	Handle string
	// Workload is network.container_workload: app (default), task or
	// staging.
	Workload string
	// Owner is executor:owner, the rep's container_owner_name (default
	// executor).
	Owner string
}

// Garden is a fake garden server: a real HTTP/1.1 server on a unix socket
// (or TCP) with the routes the agent uses, Guardian's property filters and
// garden's error JSON. Containers carry the properties Diego's executor
// sets, with log_config as a JSON string.
type Garden struct {
	// Network and Address are what a garden client dials: "unix" and the
	// socket path, or "tcp" and host:port.
	Network string
	Address string

	srv     *http.Server
	served  chan struct{}
	closing chan struct{}
	once    sync.Once

	mu         sync.Mutex
	containers map[string]map[string]string // handle -> properties
	faults     map[string]Fault
	requests   map[string]int
}

// New starts a fake garden on a unix socket in a temporary
// directory. It stops when the test ends.
func New(tb testing.TB) *Garden {
	tb.Helper()
	path := filepath.Join(gardenSocketDir(tb), "garden.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatalf("fake garden: %v", err)
	}
	return startGarden(tb, l, "unix", path)
}

// NewTCP starts a fake garden on loopback TCP, as garden listens
// when garden.listen_network is tcp. It stops when the test ends.
func NewTCP(tb testing.TB) *Garden {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fake garden: %v", err)
	}
	return startGarden(tb, l, "tcp", l.Addr().String())
}

// gardenSocketDir is a temporary directory short enough for a socket path
// (108 bytes on Linux): t.TempDir when it fits, else one under os.TempDir.
func gardenSocketDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) < 90 {
		return dir
	}
	dir, err := os.MkdirTemp("", "garden")
	if err != nil {
		tb.Fatalf("fake garden: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startGarden(tb testing.TB, l net.Listener, network, address string) *Garden {
	g := &Garden{
		Network:    network,
		Address:    address,
		served:     make(chan struct{}),
		closing:    make(chan struct{}),
		containers: map[string]map[string]string{},
		faults:     map[string]Fault{},
		requests:   map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Ping, func(w http.ResponseWriter, r *http.Request) {
		fakeserver.WriteJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc(ListContainers, g.serveList)
	mux.HandleFunc(GetInfo, g.serveInfo)
	mux.HandleFunc(GetProperties, g.serveProperties)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// garden's router answers unknown routes with a bare 404.
		http.NotFound(w, r)
	})
	g.srv = &http.Server{Handler: g.intercept(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(l) // http.ErrServerClosed after Close

	}()
	tb.Cleanup(g.Close)
	return g
}

// Close stops the server, ending delayed answers first. A unix socket is
// removed, so later dials fail as when garden is down.
func (g *Garden) Close() {
	g.once.Do(func() {
		close(g.closing)
		_ = g.srv.Close()
		<-g.served
	})
}

// AddContainer adds a container with exactly these properties, plus
// garden.state=created unless given.
func (g *Garden) AddContainer(handle string, properties map[string]string) {
	props := maps.Clone(properties)
	if props == nil {
		props = map[string]string{}
	}
	if _, ok := props["garden.state"]; !ok {
		props["garden.state"] = "created"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.containers[handle] = props
}

// AddAppContainer adds the container of one app instance with Diego's
// properties and returns its handle.
func (g *Garden) AddAppContainer(c AppContainer) string {
	c = c.WithDefaults()
	g.AddContainer(c.Handle, DiegoProperties(c))
	return c.Handle
}

// WithDefaults fills in what c leaves empty: a random handle, process
// type web, workload app, owner executor.
func (c AppContainer) WithDefaults() AppContainer {
	if c.Handle == "" {
		c.Handle = InstanceGUID()
	}
	if c.ProcessType == "" {
		c.ProcessType = "web"
	}
	if c.Workload == "" {
		c.Workload = "app"
	}
	if c.Owner == "" {
		c.Owner = "executor"
	}
	return c
}

// DiegoProperties are the properties of c's container as Diego's
// executor and the Cloud Controller set them (c.Handle must be set).
func DiegoProperties(c AppContainer) map[string]string {
	tags := map[string]string{
		"source_id":           c.AppGUID,
		"app_id":              c.AppGUID,
		"app_name":            c.AppName,
		"process_id":          c.AppGUID,
		"process_instance_id": c.Handle,
		"instance_id":         strconv.Itoa(c.Index),
		"space_id":            c.SpaceGUID,
		"organization_id":     c.OrgGUID,
	}
	if !c.NoProcessTypeTag {
		tags["process_type"] = c.ProcessType
	}
	logConfig, _ := json.Marshal(map[string]any{ // cannot fail: strings and an int
		"guid":        c.AppGUID,
		"index":       c.Index,
		"source_name": "CELL",
		"tags":        tags,
	})
	return map[string]string{
		"executor:owner":              c.Owner,
		"log_config":                  string(logConfig),
		"network.app_id":              c.AppGUID,
		"network.space_id":            c.SpaceGUID,
		"network.org_id":              c.OrgGUID,
		"network.policy_group_id":     c.AppGUID,
		"network.ports":               "8080",
		"network.container_workload":  c.Workload,
		"garden.state":                "created",
		"garden.network.container-ip": "10.255.0." + strconv.Itoa(2+c.Index%250),
		"garden.network.host-ip":      "255.255.255.255",
		"garden.network.external-ip":  "10.0.16.5",
		"garden.network.mapped-ports": "[]",
		"garden.network.interface":    "eth0", // the external networker's answer
	}
}

// InstanceGUID returns a random instance guid in Diego's shape: the
// first 28 characters of a UUID.
func InstanceGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:12])
}

// RemoveContainer destroys a container.
func (g *Garden) RemoveContainer(handle string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.containers, handle)
}

// SetProperty sets one property of a container.
func (g *Garden) SetProperty(handle, name, value string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if props, ok := g.containers[handle]; ok {
		props[name] = value
	}
}

// Inject makes endpoint (ListContainers, ..., or AnyEndpoint) answer with f
// until Clear.
func (g *Garden) Inject(endpoint string, f Fault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults[endpoint] = f
}

// SetUnavailable makes every endpoint fail as garden does when its backend
// is down: 500 with a ServiceUnavailableError naming cause.
func (g *Garden) SetUnavailable(cause string) {
	g.Inject(AnyEndpoint, Fault{Status: http.StatusInternalServerError, Type: ServiceUnavailable, Message: cause})
}

// Clear removes all injected faults.
func (g *Garden) Clear() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.faults)
}

// Requests is how many requests an endpoint (ListContainers, ...) received,
// including failed ones.
func (g *Garden) Requests(endpoint string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests[endpoint]
}

// TotalRequests is how many requests garden received on any path.
func (g *Garden) TotalRequests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.requests {
		n += c
	}
	return n
}

// intercept counts requests and applies injected faults before the real
// handlers run.
func (g *Garden) intercept(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := fakeserver.FaultLookup(&g.mu, mux, r, g.requests, g.faults, AnyEndpoint)
		if !ok {
			mux.ServeHTTP(w, r)
			return
		}
		if !fakeserver.DelayOrDrop(w, r, f.Delay, f.Drop, g.closing) {
			return
		}
		switch {
		case f.Status == 0:
			mux.ServeHTTP(w, r)
		case f.Body != "":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			_, _ = w.Write([]byte(f.Body))
		default:
			writeGardenError(w, f.Status, f.Type, f.Message, "")
		}
	})
}

// gardenError is garden's error body; all five keys are always sent.
type gardenError struct {
	Type      string
	Message   string
	Handle    string
	ProcessID string
	Binary    string
}

func writeGardenError(w http.ResponseWriter, status int, typ, message, handle string) {
	fakeserver.WriteJSON(w, status, gardenError{Type: typ, Message: message, Handle: handle})
}

func writeGardenNotFound(w http.ResponseWriter, handle string) {
	writeGardenError(w, http.StatusNotFound, ContainerNotFound, "unknown handle: "+handle, handle)
}

// serveList filters as Guardian does: every query parameter (its first
// value) must equal the container's property, and garden.state=created is
// implied unless garden.state is given; garden.state=all drops it.
func (g *Garden) serveList(w http.ResponseWriter, r *http.Request) {
	filter := map[string]string{}
	for name, values := range r.URL.Query() {
		if len(values) > 0 {
			filter[name] = values[0]
		}
	}
	if _, ok := filter["garden.state"]; !ok {
		filter["garden.state"] = "created"
	} else if filter["garden.state"] == "all" {
		delete(filter, "garden.state")
	}
	g.mu.Lock()
	handles := []string{}
	for handle, props := range g.containers {
		if gardenMatchesAll(props, filter) {
			handles = append(handles, handle)
		}
	}
	g.mu.Unlock()
	slices.Sort(handles)
	fakeserver.WriteJSON(w, http.StatusOK, struct{ Handles []string }{handles})
}

func gardenMatchesAll(props, filter map[string]string) bool {
	for name, want := range filter {
		if got, ok := props[name]; !ok || got != want {
			return false
		}
	}
	return true
}

// gardenPortMapping and gardenContainerInfo are garden's JSON shapes.
type gardenPortMapping struct {
	HostPort      uint32
	ContainerPort uint32
}

type gardenContainerInfo struct {
	State         string
	Events        []string
	HostIP        string
	ContainerIP   string
	ExternalIP    string
	ContainerPath string
	ProcessIDs    []string
	Properties    map[string]string
	MappedPorts   []gardenPortMapping
}

func (g *Garden) serveInfo(w http.ResponseWriter, r *http.Request) {
	handle := r.PathValue("handle")
	g.mu.Lock()
	props, ok := g.containers[handle]
	props = maps.Clone(props)
	g.mu.Unlock()
	if !ok {
		writeGardenNotFound(w, handle)
		return
	}
	info := gardenContainerInfo{
		State:         "active",
		Events:        []string{},
		HostIP:        props["garden.network.host-ip"],
		ContainerIP:   props["garden.network.container-ip"],
		ExternalIP:    props["garden.network.external-ip"],
		ContainerPath: "/var/vcap/data/garden/depot/" + handle,
		ProcessIDs:    []string{},
		Properties:    props,
		MappedPorts:   []gardenPortMapping{},
	}
	if port, err := strconv.ParseUint(props["network.ports"], 10, 16); err == nil {
		info.MappedPorts = append(info.MappedPorts, gardenPortMapping{HostPort: 61000, ContainerPort: uint32(port)})
	}
	fakeserver.WriteJSON(w, http.StatusOK, info)
}

// serveProperties answers as garden does: 200 and null for a handle it
// does not know (its property manager has no key space for it), not the
// 404 of its other container routes.
func (g *Garden) serveProperties(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	props := maps.Clone(g.containers[r.PathValue("handle")])
	g.mu.Unlock()
	fakeserver.WriteJSON(w, http.StatusOK, props) // a nil map is null
}
