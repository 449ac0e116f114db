package pow

import (
	"errors"
	"fmt"
)

// Protocol error codes a refused join is answered with.
const (
	// CodeRequired: the join carried no solution and the session holds
	// no pass.
	CodeRequired = "pow_required"
	// CodeInvalid: the join carried a solution that is not good (forged,
	// expired, already spent, wrong number, malformed).
	CodeInvalid = "pow_invalid"
)

// Reasons a solution is refused, as metric labels.
const (
	reasonMissing   = "missing"
	reasonMalformed = "malformed"
	reasonAlgorithm = "algorithm"
	reasonExpired   = "expired"
	reasonSignature = "signature"
	reasonNumber    = "number"
	reasonReused    = "reused"
)

// Refusal is a join refused for want of a good solution. ErrorCode is
// the protocol's error code; Error says what to do in words.
type Refusal struct {
	Reason string // one of the reason labels, for metrics
	msg    string
}

func (r *Refusal) Error() string { return r.msg }

// ErrorCode is the protocol error code for this refusal.
func (r *Refusal) ErrorCode() string {
	if r.Reason == reasonMissing {
		return CodeRequired
	}
	return CodeInvalid
}

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// ErrRequired is the refusal of a join that brought no solution.
var ErrRequired = refuse(reasonMissing, "solve a proof-of-work challenge first (GET /api/pow/challenge) and send it as \"pow\"")

// ReasonOf is the refusal reason of err, or "" when err is not a Refusal
// (the replay store failed, say).
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}
