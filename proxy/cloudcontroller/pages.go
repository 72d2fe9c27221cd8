package cloudcontroller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// page is one page of a v3 list.
type page[T any] struct {
	Pagination struct {
		TotalResults int   `json:"total_results"`
		TotalPages   int   `json:"total_pages"`
		Next         *link `json:"next"`
	} `json:"pagination"`
	Resources []T `json:"resources"`
	// raw is the whole body, for parts outside resources (included).
	raw []byte
}

func decodePage[T any](body []byte) (page[T], error) {
	var p page[T]
	if err := json.Unmarshal(body, &p); err != nil {
		return page[T]{}, err
	}
	p.raw = body
	return p, nil
}

// eachPage walks a v3 list from firstURL, following pagination.next.href,
// and hands each page to fn until fn says it has seen enough or the list
// ends. Links must stay on the Cloud Controller's scheme and host: they
// are fetched with the user's token.
func eachPage[T any](ctx context.Context, c *Client, token, firstURL, what string, fn func(page[T]) (more bool, err error)) error {
	seen := map[string]bool{}
	for next := firstURL; next != ""; {
		if len(seen) == maxPages {
			return problem.New(http.StatusBadGateway, "the Cloud Controller's list of %s has more than %d pages", what, maxPages)
		}
		if seen[next] {
			return problem.Wrap(fmt.Errorf("page %s repeats", redactQuery(next)), http.StatusBadGateway,
				"the Cloud Controller's pagination of %s loops", what)
		}
		seen[next] = true
		body, err := c.fetch(ctx, token, next, what)
		if err != nil {
			return err
		}
		p, err := decodePage[T](body)
		if err != nil {
			return problem.Wrap(fmt.Errorf("decode %s: %w", redactQuery(next), err), http.StatusBadGateway,
				"the Cloud Controller sent an invalid list of %s", what)
		}
		more, err := fn(p)
		if err != nil {
			return problem.Wrap(fmt.Errorf("decode %s: %w", redactQuery(next), err), http.StatusBadGateway,
				"the Cloud Controller sent an invalid list of %s", what)
		}
		if !more || p.Pagination.Next == nil || p.Pagination.Next.Href == "" {
			return nil
		}
		if next, err = c.sameOrigin(p.Pagination.Next.Href); err != nil {
			return problem.Wrap(err, http.StatusBadGateway, "the Cloud Controller's next page of %s is not on the Cloud Controller", what)
		}
	}
	return nil
}

// sameOrigin resolves href against the base and refuses another scheme or
// host, where the user's token must not go.
func (c *Client) sameOrigin(href string) (string, error) {
	ref, err := url.Parse(href)
	if err != nil {
		return "", fmt.Errorf("next page link: %w", err)
	}
	u := c.base.ResolveReference(ref)
	if u.Scheme != c.base.Scheme || !strings.EqualFold(u.Host, c.base.Host) {
		return "", fmt.Errorf("next page link %s://%s is not the Cloud Controller %s://%s", u.Scheme, u.Host, c.base.Scheme, c.base.Host)
	}
	return u.String(), nil
}
