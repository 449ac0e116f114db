//go:build unix

package node

import (
	"math"
	"syscall"
)

// openFileLimit is the process's open-file limit (Go raises the soft one
// to the hard one at start); 0 when unknown or unlimited.
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 || r.Cur > math.MaxInt32 {
		return 0
	}
	return int(r.Cur)
}
