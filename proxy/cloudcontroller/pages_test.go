package cloudcontroller

import (
	"net/url"
	"slices"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/test/fakecc"
	"github.com/cloudfoundry/pcap-server-release/test/fakeuaa"
)

// The role sought is on page 2 of 3: the walk follows next.href there and
// stops without fetching page 3.
func TestEachPageFollowsNextAndStopsEarly(t *testing.T) {
	u := fakeuaa.New(t)
	cc := fakecc.New(t, u)
	c, err := New(Config{URL: cc.URL, HTTPClient: cc.Client()})
	if err != nil {
		t.Fatal(err)
	}
	space := cc.AddSpace(cc.AddOrg("org").GUID, "space")
	for _, user := range []string{"first", "target", "third"} {
		cc.AddRole(fakecc.RoleSpaceDeveloper, user, space.GUID)
	}
	token := u.UserToken("first")
	q := url.Values{"types": {"space_developer"}, "space_guids": {space.GUID}, "per_page": {"1"}}

	var seen []string
	var totals []int
	err = eachPage(t.Context(), c, token, c.endpoint("/v3/roles", q), "roles", func(p page[roleResource]) (bool, error) {
		totals = append(totals, p.Pagination.TotalResults)
		for _, r := range p.Resources {
			seen = append(seen, r.Relationships.User.guid())
			if r.Relationships.User.guid() == "target" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"first", "target"}) || !slices.Equal(totals, []int{3, 3}) {
		t.Errorf("seen %v with totals %v", seen, totals)
	}
	if n := cc.Requests(fakecc.ListRoles); n != 2 {
		t.Errorf("role requests = %d, want 2", n)
	}

	seen = nil
	err = eachPage(t.Context(), c, token, c.endpoint("/v3/roles", q), "roles", func(p page[roleResource]) (bool, error) {
		for _, r := range p.Resources {
			seen = append(seen, r.Relationships.User.guid())
		}
		return true, nil
	})
	if err != nil || !slices.Equal(seen, []string{"first", "target", "third"}) {
		t.Errorf("full walk: %v, %v", seen, err)
	}
	if n := cc.Requests(fakecc.ListRoles); n != 5 {
		t.Errorf("role requests = %d, want 5", n)
	}
}
