package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultYAML is the embedded default configuration.
//
//go:embed default.yaml
var DefaultYAML []byte

// Default returns the embedded defaults.
func Default() (*Config, error) {
	var c Config
	if err := decodeStrict("defaults", DefaultYAML, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load builds the effective config: the embedded defaults, then the YAML
// file at path (when not empty; only the keys it sets change), then
// DUET_<SECTION>_<KEY> variables from env (os.Environ form), then
// validation. Every error names what is wrong and where.
func Load(path string, env []string) (*Config, error) {
	c, err := Default()
	if err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := decodeStrict(path, data, c); err != nil {
			return nil, err
		}
	}
	if err := applyEnv(c, env); err != nil {
		return nil, err
	}
	c.Warnings = c.foldDeprecated(env)
	if err := c.Validate(); err != nil {
		// A problem may come from a deprecated key the operator set
		// under its old name: say what it was mapped to.
		for _, w := range c.Warnings {
			err = errors.Join(err, errors.New("warning: "+w))
		}
		return nil, err
	}
	return c, nil
}

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	badValue     = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// decodeStrict decodes one YAML document into c, refusing unknown keys,
// and rewrites yaml.v3's messages so they name the key and section.
func decodeStrict(name string, data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil // an empty file: defaults stand
	}
	if err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, 0, len(te.Errors))
			for _, e := range te.Errors {
				msgs = append(msgs, name+": "+explainYAML(e))
			}
			return errors.New(strings.Join(msgs, "\n"))
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: more than one YAML document; put everything in one", name)
	}
	return nil
}

func explainYAML(e string) string {
	if m := unknownField.FindStringSubmatch(e); m != nil {
		section := sectionOf(m[3])
		if section == "" {
			return fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
		}
		return fmt.Sprintf("line %s: unknown key %q in section %q", m[1], m[2], section)
	}
	if m := badValue.FindStringSubmatch(e); m != nil {
		return fmt.Sprintf("line %s: %q is not a valid %s", m[1], m[3], typeWord(m[4]))
	}
	return e
}

// sectionOf maps a Go type name from a yaml.v3 message ("configs.HTTP")
// to its dotted YAML path ("http").
func sectionOf(goType string) string {
	var found string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		if t.String() == goType {
			found = path
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, strings.TrimPrefix(path+"."+yamlName(f), "."))
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return found
}

func typeWord(goType string) string {
	switch goType {
	case "time.Duration":
		return `duration (like "10s", "5m", "1h")`
	case "int", "int64":
		return "whole number"
	case "float64":
		return "number"
	case "bool":
		return "boolean (true or false)"
	case "[]string":
		return "list of strings"
	}
	return goType
}

func yamlName(f reflect.StructField) string {
	return strings.Split(f.Tag.Get("yaml"), ",")[0]
}

// applyEnv sets every DUET_<SECTION>_<KEY> from env. A DUET_ variable that
// names no setting is an error, so a typo is never silently ignored.
func applyEnv(c *Config, env []string) error {
	fields := map[string]reflect.Value{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name := prefix + "_" + strings.ToUpper(yamlName(f))
			if f.Type.Kind() == reflect.Struct {
				walk(v.Field(i), name)
				continue
			}
			fields[name] = v.Field(i)
		}
	}
	walk(reflect.ValueOf(c).Elem(), "DUET")
	var errs []error
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "DUET_") {
			continue
		}
		field, known := fields[name]
		if !known {
			errs = append(errs, fmt.Errorf("%s: unknown setting (see `duet config` for the keys)", name))
			continue
		}
		if err := setFromString(field, value); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, value, err))
		}
	}
	return errors.Join(errs...)
}

func setFromString(v reflect.Value, s string) error {
	s = strings.TrimSpace(s)
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a %s", typeWord("time.Duration"))
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a %s", typeWord("int"))
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a %s", typeWord("float64"))
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			return fmt.Errorf("want a %s", typeWord("bool"))
		}
		v.SetBool(b)
	case v.Kind() == reflect.Pointer: // an optional scalar (the deprecated switches)
		p := reflect.New(v.Type().Elem())
		if err := setFromString(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		list := []string{}
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot be set from the environment (type %s)", v.Type())
	}
	return nil
}

// masked is what secrets are replaced with in printed configs.
const masked = "***"

// Masked returns a copy with every secret replaced by "***".
func (c *Config) Masked() *Config {
	m := *c
	m.HTTP.AllowedOrigins = append([]string{}, c.HTTP.AllowedOrigins...)
	m.HTTP.TrustedProxies = append([]string{}, c.HTTP.TrustedProxies...)
	m.Store.Redis.Addrs = append([]string{}, c.Store.Redis.Addrs...)
	m.Signal.ICEServers = append([]string{}, c.Signal.ICEServers...)
	m.TURN.AllowedPeerCIDRs = append([]string{}, c.TURN.AllowedPeerCIDRs...)
	m.TURN.DeniedPeerCIDRs = append([]string{}, c.TURN.DeniedPeerCIDRs...)
	m.TURN.PreviousSecrets = make([]string, len(c.TURN.PreviousSecrets))
	for i := range m.TURN.PreviousSecrets {
		m.TURN.PreviousSecrets[i] = masked
	}
	for _, s := range []*string{&m.Store.Redis.Password, &m.TURN.Secret, &m.Admin.Token, &m.Bots.POWKey} {
		if *s != "" {
			*s = masked
		}
	}
	return &m
}

// YAML renders the config (durations as "10s"); Load reads it back.
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return buf.Bytes(), nil
}

// parseBool takes what the YAML file takes for a switch (on/off, yes/no
// besides true/false), so DUET_BOTS_POW=on means what `pow: on` does.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "yes", "y":
		return true, nil
	case "off", "no", "n":
		return false, nil
	}
	return strconv.ParseBool(s)
}
