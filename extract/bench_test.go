package extract

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkExtractPDF reads every shared PDF (160 pages; the encrypted
// ones with their passwords) once per iteration, with one instance, and
// with two instances read by two goroutines (the default on two cores).
// It reports pages/s by the clock and pages per second of the process's
// CPU time, which is what a machine shared with other work still shows.
func BenchmarkExtractPDF(b *testing.B) {
	type file struct {
		data     []byte
		password string
	}
	var files []file
	for _, e := range readManifest(b) {
		files = append(files, file{readPDF(b, e.File), e.userPassword()})
	}
	for _, instances := range []int{1, 2} {
		b.Run(map[int]string{1: "instances=1", 2: "instances=2"}[instances], func(b *testing.B) {
			p, err := NewPDF(PDFOptions{CacheDir: testCacheDir(b), Instances: instances})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			var pages atomic.Int64
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range instances {
					wg.Go(func() {
						for i := next.Add(1) - 1; i < int64(len(files)); i = next.Add(1) - 1 {
							doc, err := p.Extract(context.Background(), files[i].data, Options{Password: files[i].password})
							if err != nil {
								b.Error(err)
								return
							}
							pages.Add(int64(doc.PageCount))
						}
					})
				}
				wg.Wait()
			}
			elapsed, cpu := time.Since(start), cpuTime()-cpu0
			b.ReportMetric(float64(pages.Load())/elapsed.Seconds(), "pages/s")
			if cpu > 0 {
				b.ReportMetric(float64(pages.Load())/cpu.Seconds(), "pages/cpu-s")
			}
		})
	}
}

// BenchmarkPDFStart is the first start of a PDF reader, from NewPDF to the
// text of a one-page PDF (so it includes making an instance): cold
// compiles PDFium (no CacheDir), cached loads it from a CacheDir a
// previous start filled. Besides the time, it reports the CPU time the
// process spent (wazero compiles on several goroutines).
func BenchmarkPDFStart(b *testing.B) {
	crazy := readPDF(b, "pypdf-resources/crazyones.pdf")
	start := func(b *testing.B, dir string) {
		p, err := NewPDF(PDFOptions{CacheDir: dir, Instances: 1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Extract(context.Background(), crazy, Options{}); err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
	b.Run("cold", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			start(b, "")
		}
		reportCPU(b, cpuTime()-cpu0)
	})
	b.Run("cached", func(b *testing.B) {
		dir := testCacheDir(b)
		start(b, dir) // fills the cache if it is empty
		cpu0 := cpuTime()
		for b.Loop() {
			start(b, dir)
		}
		reportCPU(b, cpuTime()-cpu0)
	})
}

// reportCPU reports the CPU time of one iteration, out of cpu for all.
func reportCPU(b *testing.B, cpu time.Duration) {
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	}
}
