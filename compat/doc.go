// Package compat holds Ferry's compatibility tests: the official SDKs as
// real clients of Ferry's compatible endpoints, against the ferry binary
// itself, started as a subprocess and pointed at the llmtest fakes.
//
// It is a module of its own so that the main module does not require the
// SDKs: they are large, and `go test ./...` at the root stays quick. Run
// it with `cd compat && go test ./...`; FERRY_TEST_DATABASE_URL adds
// PostgreSQL runs, as at the root.
package compat
