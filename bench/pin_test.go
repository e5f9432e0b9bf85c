package main

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSplitCores checks that the halves cover the CPUs this process may
// use, without overlap, the servers' being the upper half.
func TestSplitCores(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	c, err := splitCores()
	if err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 {
		if c != nil {
			t.Fatalf("split %d CPU: %+v", all.Count(), c)
		}
		t.Skipf("this process may use %d CPU: nothing to split", all.Count())
	}
	if c.server.Count()+c.load.Count() != all.Count() || c.server.Count() < c.load.Count() || c.load.Count() == 0 {
		t.Fatalf("%d CPUs split into %d for the servers and %d for the load", all.Count(), c.server.Count(), c.load.Count())
	}
	highestLoad := -1
	for i := 0; i < len(all)*64; i++ {
		switch {
		case c.server.IsSet(i) && c.load.IsSet(i):
			t.Fatalf("CPU %d is in both halves", i)
		case (c.server.IsSet(i) || c.load.IsSet(i)) != all.IsSet(i):
			t.Fatalf("CPU %d: in a half %v, allowed %v", i, c.server.IsSet(i) || c.load.IsSet(i), all.IsSet(i))
		case c.load.IsSet(i):
			highestLoad = i
		case c.server.IsSet(i) && i < highestLoad:
			t.Fatalf("the servers' CPU %d is below the load's %d", i, highestLoad)
		}
	}
}

// TestCoresStart checks that a child started by cores.start runs on the
// servers' cores only, that the starting leaves this process's own mask
// alone, and that the exit is reported.
func TestCoresStart(t *testing.T) {
	c, err := splitCores()
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Skip("this process may use one CPU: nothing to split")
	}
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	exited, err := c.start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var child unix.CPUSet
	if err := unix.SchedGetaffinity(cmd.Process.Pid, &child); err != nil {
		t.Fatal(err)
	}
	if child != c.server {
		t.Errorf("the child may run on %s, want %s", cpuList(child), cpuList(c.server))
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("this thread's CPUs went from %s to %s", cpuList(before), cpuList(after))
	}
	cmd.Process.Kill()
	select {
	case err := <-exited:
		if err == nil {
			t.Error("a killed child reported a clean exit")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported 10 s after the kill")
	}
}
