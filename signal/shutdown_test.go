package signal

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestShutdownWhileSocketsArrive: sockets upgraded while Shutdown starts
// waiting for the open ones are either counted before the wait or
// refused; the race detector holds the WaitGroup to that.
func TestShutdownWhileSocketsArrive(t *testing.T) {
	for round := range 10 {
		l := testLimits()
		l.ConnectionsPerIP, l.ConnectRatePerIP, l.ConnectBurstPerIP, l.SessionsPerIP, l.SendQueue = 1000, 1000, 1000, 1000, 16
		h, err := NewHub(Options{Queue: nopQueue{}, Limits: l,
			Signal: testSignal()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		url := "ws" + strings.TrimPrefix(srv.URL, "http")
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ws, _, err := websocket.DefaultDialer.Dial(url, nil); err == nil {
					_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
					for {
						if _, _, err := ws.ReadMessage(); err != nil {
							break
						}
					}
					ws.Close()
				}
			}()
		}
		time.Sleep(time.Duration(round) * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		cancel()
		wg.Wait()
		srv.Close()
	}
}
