package bidi

import (
	"encoding/json"
	"fmt"
	"math"
)

// remoteValue is a script result as BiDi serialises it: a type tag and,
// for most types, a value; DOM nodes and other live objects carry a
// sharedId or handle instead.
type remoteValue struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	SharedID string          `json:"sharedId"`
}

// Node is a DOM node a script returned, usable as an input origin.
type Node struct{ SharedID string }

// goValue turns a remote value into what encoding/json would have made of
// the same value's JSON: nil, bool, float64, string, []any, map[string]any.
// DOM nodes become Node; other live objects (functions, promises, windows)
// become their type name, which is all a test can use of them.
func (v remoteValue) goValue() (any, error) {
	switch v.Type {
	case "undefined", "null":
		return nil, nil
	case "string", "bigint":
		var s string
		err := json.Unmarshal(v.Value, &s)
		return s, wrapValue(v.Type, err)
	case "boolean":
		var b bool
		err := json.Unmarshal(v.Value, &b)
		return b, wrapValue(v.Type, err)
	case "number":
		return number(v.Value)
	case "array", "set":
		var items []remoteValue
		if err := json.Unmarshal(v.Value, &items); err != nil {
			return nil, wrapValue(v.Type, err)
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			g, err := it.goValue()
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case "object", "map":
		// Entries are [key, value] pairs; a key is a string or, in a Map,
		// itself a remote value.
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(v.Value, &pairs); err != nil {
			return nil, wrapValue(v.Type, err)
		}
		out := make(map[string]any, len(pairs))
		for _, p := range pairs {
			key, err := mapKey(p[0])
			if err != nil {
				return nil, err
			}
			var rv remoteValue
			if err := json.Unmarshal(p[1], &rv); err != nil {
				return nil, wrapValue(v.Type, err)
			}
			if out[key], err = rv.goValue(); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "node":
		return Node{SharedID: v.SharedID}, nil
	case "":
		return nil, fmt.Errorf("bidi: remote value without a type")
	default:
		return v.Type, nil
	}
}

// number reads a BiDi number: JSON for finite values, a string for the
// ones JSON cannot hold.
func number(raw json.RawMessage) (any, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		return f, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, wrapValue("number", err)
	}
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "-0":
		return math.Copysign(0, -1), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return nil, fmt.Errorf("bidi: number %q", s)
}

func mapKey(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var rv remoteValue
	if err := json.Unmarshal(raw, &rv); err != nil {
		return "", wrapValue("map key", err)
	}
	g, err := rv.goValue()
	if err != nil {
		return "", err
	}
	return fmt.Sprint(g), nil
}

func wrapValue(typ string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("bidi: decoding a %s: %w", typ, err)
}
