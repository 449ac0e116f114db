package bidi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Tab is one top-level browsing context.
type Tab struct {
	c  *Conn
	ID string
}

// NewTab opens a tab of the given viewport size (0: the browser's).
func (b *Browser) NewTab(ctx context.Context, width, height int) (*Tab, error) {
	var r struct {
		Context string `json:"context"`
	}
	if err := b.Call(ctx, "browsingContext.create", map[string]any{"type": "tab"}, &r); err != nil {
		return nil, err
	}
	t := &Tab{c: b.Conn, ID: r.Context}
	if width > 0 && height > 0 {
		vp := map[string]any{"context": t.ID, "viewport": map[string]int{"width": width, "height": height}}
		if err := t.c.Call(ctx, "browsingContext.setViewport", vp, nil); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Close closes the tab (its page's unload handlers run, as when a user
// closes it).
func (t *Tab) Close(ctx context.Context) error {
	return t.c.Call(ctx, "browsingContext.close", map[string]any{"context": t.ID}, nil)
}

// Navigate loads url and waits for the load event.
func (t *Tab) Navigate(ctx context.Context, url string) error {
	return t.c.Call(ctx, "browsingContext.navigate", map[string]any{"context": t.ID, "url": url, "wait": "complete"}, nil)
}

// ScriptError is a script that threw (or returned a rejected promise).
type ScriptError struct{ Text string }

func (e *ScriptError) Error() string { return "script threw: " + e.Text }

type evalResult struct {
	Type             string      `json:"type"` // success | exception
	Result           remoteValue `json:"result"`
	ExceptionDetails struct {
		Text string `json:"text"`
	} `json:"exceptionDetails"`
}

// Eval evaluates a JavaScript expression in the page, awaits it when it
// is a promise, and returns its value as encoding/json would decode its
// JSON (nil, bool, float64, string, []any, map[string]any) or a Node.
// A throw is a *ScriptError.
func (t *Tab) Eval(ctx context.Context, expr string) (any, error) {
	var r evalResult
	err := t.c.Call(ctx, "script.evaluate", map[string]any{
		"expression":           expr,
		"target":               map[string]any{"context": t.ID},
		"awaitPromise":         true,
		"resultOwnership":      "none",
		"serializationOptions": map[string]any{"maxObjectDepth": 16},
		// A script run for a test is not the user's gesture: Start, Next
		// and the like are pressed with Click, as a user would.
		"userActivation": false,
	}, &r)
	if err != nil {
		return nil, err
	}
	if r.Type == "exception" {
		return nil, &ScriptError{Text: r.ExceptionDetails.Text}
	}
	return r.Result.goValue()
}

// EvalInto is Eval decoded into out through JSON, for typed results.
func (t *Tab) EvalInto(ctx context.Context, expr string, out any) error {
	v, err := t.Eval(ctx, expr)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bidi: re-encoding %T: %w", v, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("bidi: result %s into %T: %w", raw, out, err)
	}
	return nil
}

// element waits until css matches a rendered element, scrolls it into
// view and returns it.
func (t *Tab) element(ctx context.Context, css string) (Node, error) {
	sel, _ := json.Marshal(css)
	expr := `(() => { const e = document.querySelector(` + string(sel) + `);
		if (!e || e.getClientRects().length === 0) return null;
		e.scrollIntoView({block: "center", inline: "center"});
		return e; })()`
	for {
		v, err := t.Eval(ctx, expr)
		if err != nil {
			return Node{}, err
		}
		if n, ok := v.(Node); ok {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return Node{}, fmt.Errorf("bidi: no visible %s: %w", css, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Click presses the first element matching css with the mouse: real
// input events at its centre, so the page sees a user's click (and the
// user activation media and autoplay rules look for).
func (t *Tab) Click(ctx context.Context, css string) error {
	n, err := t.element(ctx, css)
	if err != nil {
		return err
	}
	origin := map[string]any{"type": "element", "element": map[string]string{"sharedId": n.SharedID}}
	return t.perform(ctx, map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]string{"pointerType": "mouse"},
		"actions": []map[string]any{
			{"type": "pointerMove", "x": 0, "y": 0, "origin": origin},
			{"type": "pointerDown", "button": 0},
			{"type": "pointerUp", "button": 0},
		},
	})
}

// Type clicks the element matching css (to focus it) and types text one
// code point at a time as key presses. Grapheme clusters made of several
// code points (flags, skin tones) are not supported.
func (t *Tab) Type(ctx context.Context, css, text string) error {
	if err := t.Click(ctx, css); err != nil {
		return err
	}
	var keys []map[string]any
	for _, r := range text {
		keys = append(keys,
			map[string]any{"type": "keyDown", "value": string(r)},
			map[string]any{"type": "keyUp", "value": string(r)})
	}
	if len(keys) == 0 {
		return nil
	}
	return t.perform(ctx, map[string]any{"type": "key", "id": "keyboard", "actions": keys})
}

func (t *Tab) perform(ctx context.Context, source map[string]any) error {
	err := t.c.Call(ctx, "input.performActions", map[string]any{"context": t.ID, "actions": []any{source}}, nil)
	// Leave no key or button down for the next action, even after an error.
	rerr := t.c.Call(ctx, "input.releaseActions", map[string]any{"context": t.ID}, nil)
	return errors.Join(err, rerr)
}

// Screenshot returns a PNG of the tab's viewport.
func (t *Tab) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := t.c.Call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": t.ID}, &r); err != nil {
		return nil, err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("bidi: screenshot: %w", err)
	}
	return png, nil
}
