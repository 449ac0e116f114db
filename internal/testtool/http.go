package testtool

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// AdminRequest sends body (a string as is, anything else as JSON) with
// the admin bearer token ("" sends none); the caller closes the body.
func AdminRequest(t testing.TB, method, url, token string, body any) *http.Response {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
