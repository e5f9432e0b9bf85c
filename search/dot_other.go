//go:build !amd64 || purego

package search

// dot returns the dot product of a and b, of one length.
func dot(a, b []float32) float32 { return dotGeneric(a, b) }

// useAVX2 is false: the AVX2 kernel is for amd64 only.
var useAVX2 = false
