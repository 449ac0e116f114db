package matcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyErr is what go-redis returns for an error reply from Redis.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

func TestErrorKind(t *testing.T) {
	var _ redis.Error = replyErr("")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"none", nil, ""},
		{"missing key", redis.Nil, ""},
		{"caller gave up", fmt.Errorf("join: %w", context.Canceled), ""},
		{"script not cached", replyErr("NOSCRIPT No matching script"), ""},
		{"error reply", replyErr("OOM command not allowed"), "reply"},
		{"wrapped error reply", fmt.Errorf("claim: %w", replyErr("READONLY")), "reply"},
		{"deadline", fmt.Errorf("leave: %w", context.DeadlineExceeded), "timeout"},
		{"socket timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "timeout"},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, "network"},
		{"closed pool", redis.ErrClosed, "network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorKind(tt.err); got != tt.want {
				t.Fatalf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
