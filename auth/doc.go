// Package auth holds the credential primitives Ferry's sign-in is built from:
// argon2id password hashes, short-lived signed access tokens, opaque API keys
// and refresh tokens, and the server's secret key. It keeps no state and
// touches no database; callers store what these functions return.
package auth
