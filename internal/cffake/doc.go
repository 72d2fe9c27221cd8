// Package cffake holds test fakes of Cloud Foundry components: a UAA that
// mints and serves the keys of real RS256 JWTs, and a Cloud Controller with
// a small in-memory model of orgs, spaces, apps, roles and process
// instances. Both are real HTTPS servers on loopback, each with its own CA,
// speaking the JSON shapes (including errors and pagination) of the real
// components, so the code under test runs unmodified against them.
//
// The fakes count requests per endpoint so tests can assert what was (or
// was not) called, and take injected failures: an error status and body, a
// delay that ends with the request, or a dropped connection.
package cffake
