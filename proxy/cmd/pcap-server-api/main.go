// Command pcap-server-api is the API: it authenticates users, authorizes
// captures against the Cloud Controller, holds the agents' tunnels and
// streams captures to clients.
package main

import (
	"context"
	"io"

	"github.com/cloudfoundry/pcap-server-release/internal/daemoncmd"
	"github.com/cloudfoundry/pcap-server-release/proxy/apiconfig"
	"github.com/cloudfoundry/pcap-server-release/proxy/daemon"
)

func main() {
	daemoncmd.Command[*apiconfig.Config]{
		Name:          "pcap-server-api",
		DefaultConfig: "/var/vcap/jobs/pcap-server-api/config/pcap-server-api.yml",
		Load:          apiconfig.Load,
		Serve: func(ctx context.Context, cfg *apiconfig.Config, logOut io.Writer) error {
			d, err := daemon.New(ctx, cfg, logOut)
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}.Main()
}
