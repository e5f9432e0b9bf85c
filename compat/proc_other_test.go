//go:build !linux

package compat_test

import "os/exec"

// setParentDeath does nothing here: only Linux kills a child with its parent.
func setParentDeath(*exec.Cmd) {}
