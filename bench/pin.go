package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cores splits the machine between the servers measured (Ferry, the bare
// proxy) and this process (the client and the fake upstream), as if they
// ran on machines of their own, which is how Ferry is deployed: its
// clients and its model are elsewhere. Sharing every core instead, the
// three processes contend for the CPU, and what a server adds then
// depends on how the scheduler interleaves them as much as on the server
// (see BENCHMARKS.md, where runs of both layouts are set side by side).
// Both servers get the same cores, one at a time, so the comparison
// between them stays fair.
type cores struct {
	server, load unix.CPUSet
}

// splitCores divides the CPUs this process may run on in two halves, the
// upper one for the servers. It returns nil when there are fewer than two.
func splitCores() (*cores, error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, err
	}
	var ids []int
	for i := 0; i < len(all)*64; i++ {
		if all.IsSet(i) {
			ids = append(ids, i)
		}
	}
	if len(ids) < 2 {
		return nil, nil
	}
	c := &cores{}
	for i, id := range ids {
		if i < len(ids)/2 {
			c.load.Set(id)
		} else {
			c.server.Set(id)
		}
	}
	return c, nil
}

// pinSelf moves every thread of this process onto the load's cores and
// sets GOMAXPROCS to match. Threads created later inherit the mask of the
// thread that creates them, and so stay there too.
func (c *cores) pinSelf() error {
	if err := setThreadsAffinity(c.load); err != nil {
		return err
	}
	runtime.GOMAXPROCS(c.load.Count())
	return nil
}

// setThreadsAffinity sets the CPU mask of every thread of this process.
func setThreadsAffinity(set unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may have ended since the listing: ESRCH is no error.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pinning thread %d: %w", tid, err)
		}
	}
	return nil
}

// start starts cmd on the servers' cores (on any core when c is nil) and
// returns a channel that yields cmd.Wait's error once it exits. A child
// inherits the CPU mask of the thread that forks it, so cmd starts from a
// thread locked to this goroutine with its mask set; the child's Go
// runtime then sizes GOMAXPROCS to those cores, as in a container of that
// size. The goroutine keeps the thread until the child exits: Pdeathsig
// is sent when the forking thread ends, not the process.
func (c *cores) start(cmd *exec.Cmd) (<-chan error, error) {
	exited := make(chan error, 1)
	if c == nil {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() { exited <- cmd.Wait() }()
		return exited, nil
	}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, with its changed mask, ends with
		// this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		if err := unix.SchedSetaffinity(0, &c.server); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// describe says where each side ran, for the report.
func (c *cores) describe() string {
	if c == nil {
		return "the client, the fake upstream and the server measured share every core"
	}
	return fmt.Sprintf("the server measured (Ferry or the bare proxy) runs on %s and the client with the fake upstream on %s (`-pin`), "+
		"each with GOMAXPROCS set to its cores (the machine line gives this process's before it moved)",
		cpuList(c.server), cpuList(c.load))
}

// cpuList names the CPUs in s: "CPU 1", "CPUs 2, 3".
func cpuList(s unix.CPUSet) string {
	var ids []string
	for i := 0; i < len(s)*64; i++ {
		if s.IsSet(i) {
			ids = append(ids, strconv.Itoa(i))
		}
	}
	if len(ids) == 1 {
		return "CPU " + ids[0]
	}
	return "CPUs " + strings.Join(ids, ", ")
}
