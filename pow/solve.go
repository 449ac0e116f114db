package pow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Solve finds the number of c by trying every one, as a browser does,
// and returns the payload to send. Tests and non-browser clients use it;
// the node itself never needs to.
func Solve(c Challenge) (string, error) {
	for n := int64(0); n <= c.MaxNumber; n++ {
		if hashHex(c.Salt, n) == c.Challenge {
			return Payload(c, n), nil
		}
	}
	return "", errors.New("pow: no number up to maxnumber solves the challenge")
}

// Payload is the base64 JSON a client sends for c solved by n.
func Payload(c Challenge, n int64) string {
	raw, _ := json.Marshal(map[string]any{
		"algorithm": c.Algorithm, "challenge": c.Challenge, "number": n,
		"salt": c.Salt, "signature": c.Signature,
	})
	return base64.StdEncoding.EncodeToString(raw)
}
