package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat and of the
// counters in /proc/stat (USER_HZ, 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

// procCPU reads the CPU time a process has used so far, user and system,
// all threads (those that ended included).
func procCPU(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	if pid == 0 {
		path = "/proc/self/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces; the fields after
	// it start with the state (field 3); utime and stime are fields 14, 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("%s: too few fields", path)
	}
	var ticks int64
	for _, v := range fields[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// machineBusy reads the CPU time every core has spent busy since boot
// (/proc/stat: all but idle and iowait), whoever spent it, and the part of
// it that was steal: time a virtual machine's core was runnable but the
// host ran something else.
func machineBusy() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks, stolen int64
	// user nice system idle iowait irq softirq steal (guest time is
	// already in user).
	for i, v := range fields[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
		if i == 7 {
			stolen = n
		}
	}
	return time.Duration(ticks) * clockTick, time.Duration(stolen) * clockTick, nil
}

// loadMeter tells, over a span of time, how much of the machine's CPU went
// to processes outside the benchmark (this process, which holds the client
// and the fake upstream, and the servers it started): the other work that
// makes a run noisy.
type loadMeter struct {
	pids  []int // the benchmark's child processes
	start time.Time
	busy  time.Duration // the machine's, at start
	steal time.Duration // the host's, at start
	ours  time.Duration // the benchmark's processes', at start
}

func startLoadMeter(pids ...int) *loadMeter {
	m := &loadMeter{pids: pids, start: time.Now()}
	m.busy, m.steal, m.ours = m.read()
	return m
}

// read returns the machine's busy time, its steal and the benchmark's CPU
// time; a process that cannot be read counts nothing.
func (m *loadMeter) read() (busy, steal, ours time.Duration) {
	busy, steal, _ = machineBusy()
	for _, pid := range append([]int{0}, m.pids...) {
		if d, err := procCPU(pid); err == nil {
			ours += d
		}
	}
	return busy, steal, ours
}

// other is the share of the machine's CPU (all cores) that other
// processes used since start, from 0 to 1, and the share that was steal,
// the host's other machines. The machine's busy time counts steal, but a
// process's own times may too (when the kernel does not account steal
// apart from tasks), so steal is not always within the first share.
func (m *loadMeter) other() (other, steal float64) {
	busy, st, ours := m.read()
	wall := time.Since(m.start)
	if wall <= 0 {
		return 0, 0
	}
	all := float64(wall) * float64(runtime.NumCPU())
	o := float64((busy-m.busy)-(ours-m.ours)) / all
	return min(max(o, 0), 1), min(max(float64(st-m.steal)/all, 0), 1)
}
