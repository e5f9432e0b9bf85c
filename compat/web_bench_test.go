package compat_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// BenchmarkWebFirstPaint loads the web page in headless Chromium from a
// Ferry on localhost, with the browser's cache off so every file comes
// over the wire each time (cold) or with it on (warm, a second visit), and
// reports the Performance API's first-contentful-paint (target: under
// 300 ms), when the HTML had arrived, and the bytes the page loaded as the
// browser decoded them (target: under 200 KB).
//
//	cd compat && go test -run '^$' -bench BenchmarkWebFirstPaint -benchtime 20x .
func BenchmarkWebFirstPaint(b *testing.B) {
	br := newBrowser(b)
	fake := llmtest.Start(b)
	dir := b.TempDir()
	base := "http://" + start(b, dir, []string{
		"FERRY_DATA_DIR=" + filepath.Join(dir, "data"),
		"FERRY_LOG_LEVEL=warn",
		"OLLAMA_BASE_URL=" + fake.OllamaURL(),
	})
	for _, cache := range []struct {
		name     string
		disabled bool
	}{{"cold", true}, {"warm", false}} {
		b.Run(cache.name, func(b *testing.B) {
			err := br.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: cache.disabled})
				return err
			}))
			if err != nil {
				b.Fatal(err)
			}
			type metrics struct {
				FCP   float64 `json:"fcp"`
				HTML  float64 `json:"html"`
				Bytes float64 `json:"bytes"`
			}
			var fcp, html, bytes float64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
				var m metrics
				err := chromedp.Do(ctx, chromedp.Navigate(base+"/"))
				if err == nil {
					m, err = chromedp.Run(ctx, chromedp.Poll[metrics](`(() => {
						const p = performance.getEntriesByName("first-contentful-paint")[0];
						if (!p) return false;
						const nav = performance.getEntriesByType("navigation")[0];
						const res = performance.getEntriesByType("resource").reduce((n, r) => n + r.decodedBodySize, 0);
						return {fcp: p.startTime, html: nav.responseEnd, bytes: res + nav.decodedBodySize}; })()`,
						chromedp.WithPollingTimeout(20*time.Second)))
				}
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				fcp += m.FCP
				html += m.HTML
				bytes = m.Bytes
			}
			b.ReportMetric(fcp/float64(b.N), "fcp-ms")
			b.ReportMetric(html/float64(b.N), "html-ms")
			b.ReportMetric(bytes, "page-bytes")
		})
	}
}
