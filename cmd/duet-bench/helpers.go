package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Small helpers for the bench scripts, so they need neither curl nor
// python on a fresh machine:
//
//	duet-bench port              a free loopback TCP port
//	duet-bench ready URL         wait (up to 15s) until URL answers 200
//	duet-bench get FILE A.B      a number from a JSON result, e.g. register_to_notified.p99_ms
//	duet-bench gobench FILE      a Markdown table of `go test -bench` output, medians per benchmark
//	duet-bench metrics URL NAME… each metric's value on a Prometheus text
//	                             page, summed over its labels, one per line
func helper(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 2 && args[0] == "gobench":
		f, err := os.Open(args[1])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := goBenchTable(f, stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case len(args) >= 3 && args[0] == "metrics":
		sums, err := scrape(args[1])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, name := range args[2:] {
			fmt.Fprintln(stdout, strconv.FormatFloat(sums[name], 'f', -1, 64))
		}
		return 0
	case len(args) == 1 && args[0] == "port":
		port, err := freePort()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, port)
		return 0
	case len(args) == 2 && args[0] == "ready":
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := http.Get(args[1]); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return 0
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintln(stderr, args[1], "not ready within 15s")
		return 1
	case len(args) == 3 && args[0] == "get":
		b, err := os.ReadFile(args[1])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		for _, k := range splitDots(args[2]) {
			m, ok := v.(map[string]any)
			if !ok {
				fmt.Fprintln(stderr, "no", args[2])
				return 1
			}
			v = m[k]
		}
		if f, ok := v.(float64); ok {
			fmt.Fprintln(stdout, strconv.FormatFloat(f, 'f', -1, 64))
			return 0
		}
		fmt.Fprintln(stdout, v)
		return 0
	}
	fmt.Fprintln(stderr, "usage: duet-bench port | ready URL | get FILE KEY.PATH | metrics URL NAME... | gobench FILE")
	return 2
}

// freePort is a loopback port free for both TCP and UDP: the scripts
// give one port to a node's HTTP and the same number to its SFU or TURN
// UDP sockets, and a port free for TCP alone may be some other process's
// UDP socket.
func freePort() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("no loopback port free for both TCP and UDP in 50 tries")
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// scrape sums every sample of each metric on a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(fields[0], "{")
		if v, err := strconv.ParseFloat(fields[1], 64); err == nil {
			sums[name] += v
		}
	}
	return sums, nil
}
