package boshaccess

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/director"
	"github.com/cloudfoundry/pcap-server-release/proxy/uaa"
	"github.com/cloudfoundry/pcap-server-release/test/fuzzcorpus"
)

// answers is a director that answers the instances it was given.
type answers []director.Instance

func (answers) Deployments(context.Context, string) ([]director.Deployment, error) { return nil, nil }
func (a answers) Instances(context.Context, string, string) ([]director.Instance, error) {
	return a, nil
}

// instancesSeeds are the director's answers, as it gives them and odder:
// VMs, a VM-less instance, no index, a bad IP, IPv6, duplicates.
func instancesSeeds() []string {
	return []string{
		`[{"agent_id":"a","cid":"vm-1","job":"router","index":0,"id":"6a3c","az":"z1","ips":["10.0.1.5"],"vm_created_at":"2026-01-02T03:04:05Z","expects_vm":true},` +
			`{"agent_id":null,"cid":null,"job":"smoke-tests","index":0,"id":"e7c1","az":null,"ips":[],"vm_created_at":null,"expects_vm":false}]`,
		`[{"cid":"vm-2","job":"router","id":"no-index","ips":["fd00::5","10.0.2.5"]}]`,
		`[{"cid":"vm-3","job":"router","index":1,"id":"bad-ip","ips":["cell-1"]},{"cid":"vm-3","job":"router","index":1,"id":"bad-ip","ips":["::ffff:10.0.0.1"]}]`,
		`[]`,
		`{"not":"a list"}`,
	}
}

func TestSeedCorpus(t *testing.T) {
	var seeds []any
	for _, s := range instancesSeeds() {
		seeds = append(seeds, []byte(s))
	}
	fuzzcorpus.Check(t, "FuzzInstances", seeds...)
}

// FuzzInstances feeds the director's instance list from anywhere (the
// director is trusted with names, not with shapes): no panic, and every
// VM picked is of the group the slug names, no more of them than the
// director listed, their IPs addresses (IPv4-mapped ones as IPv4).
func FuzzInstances(f *testing.F) {
	for _, s := range instancesSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in []director.Instance
		if json.Unmarshal(body, &in) != nil {
			return
		}
		r := &Resolver{Director: answers(in), UUID: "u"}
		admin := &uaa.Identity{UserID: "ops", Scopes: []string{ScopeAdmin}}
		for _, slug := range []string{"router", "router/0", "router/6a3c"} {
			vms, err := r.Resolve(context.Background(), admin, "cf", []string{slug})
			if err != nil {
				continue
			}
			group, _, _ := strings.Cut(slug, "/")
			for _, vm := range vms {
				if vm.Group != group || vm.Deployment != "cf" {
					t.Fatalf("slug %s picked %+v", slug, vm)
				}
				for _, ip := range vm.IPs {
					if !ip.IsValid() || ip.Is4In6() {
						t.Fatalf("IP %v of %+v", ip, vm)
					}
				}
				if vm.Unavailable == "" && len(vm.IPs) == 0 && vm.Instance() == "" {
					t.Fatalf("%+v names nothing", vm)
				}
			}
			if len(vms) > len(in) {
				t.Fatalf("%d VMs from %d instances", len(vms), len(in))
			}
		}
	})
}
