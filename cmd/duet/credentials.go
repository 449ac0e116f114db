package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/turn"
)

// turnCredentials prints a TURN REST username and password for the given
// secret, the same kind duet hands browsers, for turnutils_uclient -u/-w.
func turnCredentials(args, env []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("turn-credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "TURN REST secret (default: turn.secret from --config or DUET_TURN_SECRET)")
	ttl := fs.Duration("ttl", 0, "how long the credential lives (default: turn.credential_ttl)")
	user := fs.String("user", "", "user part of the username (EXPIRY:USER); empty makes a bare EXPIRY")
	path := fs.String("config", "", "YAML config file to read turn.secret and turn.credential_ttl from")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "duet turn-credentials: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := configs.Load(*path, env)
	if err != nil {
		fmt.Fprintf(stderr, "duet: config: %v\n", err)
		return 2
	}
	if *secret == "" {
		*secret = cfg.TURN.Secret
	}
	if *secret == "" {
		fmt.Fprintln(stderr, "duet turn-credentials: no secret: pass --secret, or set turn.secret (DUET_TURN_SECRET) to the node's")
		return 2
	}
	if *ttl == 0 {
		*ttl = cfg.TURN.CredentialTTL
	}
	if *ttl < 0 {
		fmt.Fprintf(stderr, "duet turn-credentials: --ttl %v is negative\n", *ttl)
		return 2
	}
	if strings.ContainsAny(*user, "\r\n") || len(*user) > 400 {
		fmt.Fprintln(stderr, "duet turn-credentials: --user must be one line of at most 400 bytes")
		return 2
	}
	cred, err := turn.Credentials{Secrets: []string{*secret}, TTL: *ttl, Now: time.Now}.MintUser(*user)
	if err != nil {
		fmt.Fprintf(stderr, "duet turn-credentials: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\nexpires: %s\n", cred.Username, cred.Password, cred.Expiry.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "# turnutils_uclient -u '%s' -w '%s' -p %s SERVER_IP\n", cred.Username, cred.Password, portOf(cfg.TURN.ListenUDP))
	return 0
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return "3478"
}
