package bidi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeEnd is the browser's end of a BiDi socket, answering by a script.
func fakeEnd(t *testing.T, answer func(ws *websocket.Conn, id int64, method string)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			var cmd struct {
				ID     int64  `json:"id"`
				Method string `json:"method"`
			}
			if err := ws.ReadJSON(&cmd); err != nil {
				return
			}
			answer(ws, cmd.ID, cmd.Method)
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestConnCall(t *testing.T) {
	events := make(chan string, 4)
	url := fakeEnd(t, func(ws *websocket.Conn, id int64, method string) {
		switch method {
		case "ok":
			// An event first: it must not be taken for the answer.
			_ = ws.WriteJSON(map[string]any{"type": "event", "method": "log.entryAdded", "params": map[string]any{"text": "hi"}})
			_ = ws.WriteJSON(map[string]any{"type": "success", "id": id, "result": map[string]any{"context": "tab-1"}})
		case "bad":
			_ = ws.WriteJSON(map[string]any{"type": "error", "id": id, "error": "no such frame", "message": "tab-9 is gone"})
		case "late":
			// Never answered.
		case "bye":
			_ = ws.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, func(method string, params json.RawMessage) { events <- method + " " + string(params) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var r struct {
		Context string `json:"context"`
	}
	if err := c.Call(ctx, "ok", nil, &r); err != nil || r.Context != "tab-1" {
		t.Fatalf("ok: %+v, %v", r, err)
	}
	if got := <-events; got != `log.entryAdded {"text":"hi"}` {
		t.Fatalf("event %q", got)
	}
	if err := c.Call(ctx, "bad", nil, nil); err == nil || !strings.Contains(err.Error(), "no such frame: tab-9 is gone") {
		t.Fatalf("bad: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if err := c.Call(short, "late", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("late: %v", err)
	}
	// The socket still works after a call that timed out.
	if err := c.Call(ctx, "ok", nil, nil); err != nil {
		t.Fatalf("ok after a timeout: %v", err)
	}
	<-events
	if err := c.Call(ctx, "bye", nil, nil); err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("bye: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after the far end closed")
	}
	if err := c.Call(ctx, "ok", nil, nil); err == nil {
		t.Fatal("a call on a closed socket succeeded")
	}
}
