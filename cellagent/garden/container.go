package garden

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agent"
	"github.com/cloudfoundry/pcap-server-release/cellagent/procwatch"
)

// Properties in which garden's networkers name the container's network
// interface: an external networker's answer (silk's, or a plugin's), and
// garden's own networking (kawasaki).
const (
	propInterface         = "garden.network.interface"
	propKawasakiInterface = "kawasaki.container-interface"
)

// containerInterface is the container's network interface as garden
// names it, or empty when it names none that could be one.
func containerInterface(props map[string]string) string {
	for _, k := range []string{propInterface, propKawasakiInterface} {
		if name := props[k]; validInterfaceName(name) {
			return name
		}
	}
	return ""
}

// validInterfaceName is the kernel's rule for a network interface name
// (dev_valid_name): 1 to 15 bytes, no slash, colon or white space, not .
// or ..
func validInterfaceName(name string) bool {
	return name != "" && len(name) < 16 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/: \t\n\v\f\r\x00")
}

// errInitExited says that the container ended before it was watched.
var errInitExited = errors.New("its init process has exited")

// initWatch watches the container's end through its init process, which
// garden's destroy kills (runc delete) before it takes the network down,
// and which exits in no other way: garden's init only reaps.
type initWatch struct {
	handle string
	w      *procwatch.Watch
}

var _ agent.EndWatch = (*initWatch)(nil)

func (i *initWatch) Ended() <-chan struct{} { return i.w.Exited() }
func (i *initWatch) Close()                 { i.w.Close() }
func (i *initWatch) Why() string {
	return fmt.Sprintf("container %s has ended: its init process %d exited", i.handle, i.w.PID())
}

// watchEnd watches the container's init process, named by runc's state.
// It returns nil without an error when there is none to watch (no state,
// or a kernel without pidfds): the capture then ends only when its
// interface goes. errInitExited means the container has already ended.
func (f netnsFinder) watchEnd(handle string) (*initWatch, error) {
	st, statePath, ok := f.initProcess(handle)
	if !ok {
		return nil, nil
	}
	w, err := procwatch.Open(st.InitPID)
	if errors.Is(err, procwatch.ErrNoProcess) {
		return nil, errInitExited
	}
	if err != nil {
		return nil, fmt.Errorf("init process %d named by %s: %w", st.InitPID, statePath, err)
	}
	// The pidfd names whichever process had the PID when it was opened:
	// if that is still the init process runc started, it is the one.
	if st.InitStart != 0 {
		if start, err := procStartTime(st.InitPID); err != nil || start != st.InitStart {
			w.Close()
			return nil, errInitExited
		}
	}
	return &initWatch{handle: handle, w: w}, nil
}
