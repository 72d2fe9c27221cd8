// Command pcap-server is the agent on every Diego cell: it dials the API
// replicas, and captures in app containers on their request.
package main

import (
	"context"
	"io"
	"runtime"

	"github.com/cloudfoundry/pcap-server-release/cellagent/agentconfig"
	"github.com/cloudfoundry/pcap-server-release/cellagent/bpfcompile"
	"github.com/cloudfoundry/pcap-server-release/cellagent/daemon"
	"github.com/cloudfoundry/pcap-server-release/internal/daemoncmd"
)

func main() {
	// The agent compiles capture filters in children of itself.
	bpfcompile.Main()
	daemoncmd.Command[*agentconfig.Config]{
		Name:          "pcap-server",
		DefaultConfig: "/var/vcap/jobs/pcap-server/config/pcap-server.yml",
		Load:          agentconfig.Load,
		Serve: func(ctx context.Context, cfg *agentconfig.Config, logOut io.Writer) error {
			// The cell's cores are the apps': the agent takes at most
			// this many, however many the VM has.
			runtime.GOMAXPROCS(cfg.Limits.GOMAXPROCS)
			d, err := daemon.New(cfg, daemon.Options{LogOutput: logOut})
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}.Main()
}
