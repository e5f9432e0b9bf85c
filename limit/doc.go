// Package limit decides how often a client may do something: it throttles
// repeated failures (Failures) so credentials cannot be guessed at speed.
// Every limiter has an in-memory implementation for a single instance and a
// Redis one for instances that must share counts.
package limit
