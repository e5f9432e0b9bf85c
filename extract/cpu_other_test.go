//go:build !unix

package extract

import "time"

// cpuTime is 0 where getrusage is missing: no CPU figures.
func cpuTime() time.Duration { return 0 }
