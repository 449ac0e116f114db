// Package testtool holds the few helpers integration tests in several
// packages share: finding a system tool (failing under CI=true rather than
// skipping) and free loopback ports.
package testtool

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of a system tool. Missing, it fails the test
// under CI=true (CI must prove the capability) and skips it elsewhere.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required (CI=true) but not installed: run scripts/test-deps.sh", name)
	}
	t.Skipf("%s not installed; run scripts/test-deps.sh", name)
	return ""
}

// FreePort returns a loopback port that is free for both TCP and UDP at
// the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp4", ln.Addr().String())
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}
