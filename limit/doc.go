// Package limit decides how often a client may do something: it counts
// attempts per key (Failures), reserving each before it is made, so that
// credentials cannot be guessed at speed and accounts cannot be made in
// bulk. Every limiter has an in-memory implementation for a single instance
// and a Redis one for instances that must share counts.
package limit
