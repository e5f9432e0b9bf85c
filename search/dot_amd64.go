//go:build !purego

package search

import "golang.org/x/sys/cpu"

// useAVX2 is whether dot runs the AVX2 and FMA kernel (dot_amd64.s):
// eight multiply-adds an instruction, so that the exact cosine scan is
// bound by memory rather than by the scalar loop (BENCHMARKS.md).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotAVX2(a, b *float32, n int) float32

// dot returns the dot product of a and b, of one length.
func dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	b = b[:len(a)]
	if useAVX2 {
		return dotAVX2(&a[0], &b[0], len(a))
	}
	return dotGeneric(a, b)
}
