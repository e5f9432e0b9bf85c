package search

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotKernel checks dot (the AVX2 kernel where the CPU has it) against
// the plain loop for every length up to 100 and the embedding sizes in
// use, unaligned slices included.
func TestDotKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	lengths := []int{384, 768, 1024, 1536}
	for n := 0; n <= 100; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for off := range 3 {
			a := make([]float32, n+off)
			b := make([]float32, n+off)
			for i := range a {
				a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			a, b = a[off:], b[off:]
			var want float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
			}
			got, plain := float64(dot(a, b)), float64(dotGeneric(a, b))
			// float32 sums in another order: within a few ulps of the
			// magnitudes summed.
			tol := 1e-5 * math.Sqrt(float64(n)+1) * 4
			if math.Abs(got-want) > tol || math.Abs(plain-want) > tol {
				t.Fatalf("n %d offset %d: dot %v, plain %v; want %v", n, off, got, plain, want)
			}
		}
	}
}

// BenchmarkDot384 is one cosine of all-MiniLM's size.
func BenchmarkDot384(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x, y := randomUnit(rng, 384), randomUnit(rng, 384)
	var s float32
	for b.Loop() {
		s += dot(x, y)
	}
	_ = s
}
