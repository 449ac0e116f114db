package bidi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Options say how to start Firefox.
type Options struct {
	Exe        string         // the firefox (or firefox-esr) binary
	ProfileDir string         // an empty directory; user.js is written there
	Prefs      map[string]any // added to (and overriding) QuietPrefs
	Log        io.Writer      // Firefox's stdout and stderr (nil: discarded)
	// OnEvent receives every BiDi event (see Subscribe); nil ignores them.
	// It runs on the socket's reader goroutine and must not block.
	OnEvent func(method string, params json.RawMessage)
}

// QuietPrefs keep a test Firefox off the network it does not need (the
// test machines often have no internet, and a browser that tries updates,
// telemetry or remote settings there only adds noise and timeouts) and
// skip first-run pages.
func QuietPrefs() map[string]any {
	return map[string]any{
		"app.update.auto":                             false,
		"app.update.checkInstallTime":                 false,
		"app.update.disabledForTesting":               true,
		"app.normandy.enabled":                        false,
		"browser.aboutwelcome.enabled":                false,
		"browser.newtabpage.enabled":                  false,
		"browser.safebrowsing.downloads.enabled":      false,
		"browser.safebrowsing.malware.enabled":        false,
		"browser.safebrowsing.phishing.enabled":       false,
		"browser.search.update":                       false,
		"browser.shell.checkDefaultBrowser":           false,
		"browser.startup.homepage_override.mstone":    "ignore",
		"browser.startup.page":                        0,
		"datareporting.healthreport.uploadEnabled":    false,
		"datareporting.policy.dataSubmissionEnabled":  false,
		"extensions.getAddons.cache.enabled":          false,
		"extensions.update.enabled":                   false,
		"geo.provider.network.url":                    "",
		"messaging-system.rsexperimentloader.enabled": false,
		"network.captive-portal-service.enabled":      false,
		"network.connectivity-service.enabled":        false,
		"network.dns.disablePrefetch":                 true,
		"network.prefetch-next":                       false,
		"services.settings.server":                    "data:,",
		"toolkit.telemetry.enabled":                   false,
		"toolkit.telemetry.server":                    "",
		"toolkit.telemetry.unified":                   false,
	}
}

// Browser is a running Firefox and the BiDi session on it.
type Browser struct {
	*Conn
	cmd  *exec.Cmd
	exit chan struct{} // closed when the process has been reaped
	werr error         // its Wait result, once exit is closed
}

var listening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// Start runs Firefox headless with a BiDi endpoint on a free loopback
// port and opens a session. ctx bounds only the start-up.
func Start(ctx context.Context, o Options) (*Browser, error) {
	if err := writePrefs(o.ProfileDir, o.Prefs); err != nil {
		return nil, err
	}
	// Port 0: Firefox picks a free port and prints it, so two test
	// browsers (or other programs) never race for one.
	cmd := exec.Command(o.Exe, "--headless", "--no-remote", "--remote-debugging-port=0",
		"--profile", o.ProfileDir, "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_HEADLESS=1", "MOZ_CRASHREPORTER_DISABLE=1")
	// Its own process group, so cleanup can end the content processes
	// too; and it dies with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	cmd.Stdout = log
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("bidi: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bidi: starting %s: %w", o.Exe, err)
	}
	b := &Browser{cmd: cmd, exit: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		// Copy the whole of stderr to the log; hand over the endpoint.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(log, stderr)
		b.werr = cmd.Wait()
		close(b.exit)
	}()
	var url string
	select {
	case url = <-urls:
	case <-b.exit:
		return nil, fmt.Errorf("bidi: firefox exited before serving BiDi: %v", b.werr)
	case <-ctx.Done():
		b.kill()
		return nil, fmt.Errorf("bidi: waiting for firefox's BiDi endpoint: %w", ctx.Err())
	}
	conn, err := Dial(ctx, strings.TrimSuffix(url, "/")+"/session", o.OnEvent)
	if err != nil {
		b.kill()
		return nil, err
	}
	b.Conn = conn
	// acceptInsecureCerts: tests serve HTTPS with their own CAs.
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{"acceptInsecureCerts": true}}}
	if err := b.Call(ctx, "session.new", caps, nil); err != nil {
		b.kill()
		return nil, err
	}
	return b, nil
}

// Subscribe asks for events (e.g. "log.entryAdded") to go to OnEvent.
func (b *Browser) Subscribe(ctx context.Context, events ...string) error {
	return b.Call(ctx, "session.subscribe", map[string]any{"events": events}, nil)
}

// Close ends the session and the browser (browser.close), and kills what
// is left of it after ten seconds.
func (b *Browser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	callErr := b.Call(ctx, "browser.close", nil, nil)
	_ = b.Conn.Close()
	select {
	case <-b.exit:
	case <-ctx.Done():
		b.kill()
		return fmt.Errorf("bidi: firefox did not quit within 10s of browser.close (%v); killed", callErr)
	}
	// Content processes may outlive the parent for a moment.
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	return nil
}

// Exited is closed when the Firefox process has ended.
func (b *Browser) Exited() <-chan struct{} { return b.exit }

func (b *Browser) kill() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exit
	if b.Conn != nil {
		_ = b.Conn.Close()
	}
}

// writePrefs writes QuietPrefs with extra over them as user.js, which
// Firefox reads at every start.
func writePrefs(dir string, extra map[string]any) error {
	prefs := QuietPrefs()
	for k, v := range extra {
		prefs[k] = v
	}
	keys := make([]string, 0, len(prefs))
	for k := range prefs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		v, err := prefValue(prefs[k])
		if err != nil {
			return fmt.Errorf("bidi: pref %s: %w", k, err)
		}
		fmt.Fprintf(&sb, "user_pref(%q, %s);\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(dir, "user.js"), []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("bidi: writing prefs: %w", err)
	}
	return nil
}

func prefValue(v any) (string, error) {
	switch v := v.(type) {
	case bool, int:
		return fmt.Sprint(v), nil
	case string:
		b, err := json.Marshal(v) // a JS string literal
		return string(b), err
	default:
		return "", fmt.Errorf("a pref is a bool, int or string, not %T", v)
	}
}
