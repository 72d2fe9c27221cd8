// Package fakeserver is what every fake in test/ shares, so they all have
// one shape: a real server started by a constructor that takes the test
// (and stops when it ends), its own throw-away CA, a count of requests per
// endpoint, and injected faults (an error status and body, a delay that
// ends with the request, a dropped connection), answering in the real
// component's JSON.
//
// The fakes themselves sit beside this package, one per real thing:
// fakeuaa (UAA, Cloud Foundry's or, with an option, the BOSH director's),
// fakecc (the Cloud Controller), fakebosh (the BOSH director), fakegarden
// (garden), fakecf (the cf CLI that runs plugins).
package fakeserver
