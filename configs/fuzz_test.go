package configs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: any file either loads into a config that validates, or is
// refused with an error naming it; nothing panics.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(DefaultYAML))
	f.Add([]byte("http:\n  listn: x\n"))
	f.Add([]byte("matcher:\n  interest_timeout: 10\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("---\n---\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned an invalid config: %v", err)
		}
	})
}
