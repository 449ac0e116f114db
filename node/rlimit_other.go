//go:build !unix

package node

// openFileLimit: no open-file limit is known here.
func openFileLimit() int { return 0 }
