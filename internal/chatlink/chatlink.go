// Package chatlink finds links in chat text: what a stranger could click
// or paste into an address bar. The node uses it to hold back or flag
// links early in a chat (signal.chat_links); web/static/links.js is the
// page's twin of the same rules, tested against the same table.
//
// It catches URLs with a scheme (https://x, ftp://x, mailto:, magnet:),
// anything starting "www.", bare domains ending in a common top-level
// domain (example.com, t.me/x, shop.example.co.uk/path), and IPv4
// addresses with a port or a path. Spelled-out obfuscations ("example
// dot com", "e x a m p l e . c o m", look-alike dots) are out of scope:
// a determined spammer gets past any list, and the point is to take the
// one-click link away from the casual bot.
package chatlink

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TLDs are the top-level domains a bare "name.tld" counts as a link
// with. Common ones only: every real TLD would flag ordinary text such as
// "main.go" or "readme.md", while a scheme or "www." is caught whatever
// the TLD.
var tlds = strings.Fields(`
	com net org info biz io co me tv cc gg ly to xyz top club online site
	shop store app dev link live click icu vip fun space website tech pro
	ru de uk fr es nl pl br in cn jp kr au ca us eu ch se no fi dk at be cz
	tr ua kz ir vn id ph mx ar cl nz za gr pt ro hu sk bg rs
	onion ai gl bit ws su
`)

var tldSet = func() map[string]bool {
	m := make(map[string]bool, len(tlds))
	for _, t := range tlds {
		m[t] = true
	}
	return m
}()

// The forms with a marker the text must hold ("://", ":", "www.", digits
// and dots) are regexps, tried only when the marker is there; bare
// domains are found by hand from each dot (see bareDomain), as one
// Unicode-aware regexp with the TLD alternation cost ~60 µs a line.
var (
	schemeURL = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]{1,15}://[^\s<>"]`)
	schemeURI = regexp.MustCompile(`(?i)\b(?:mailto|magnet|tg|sms|tel|whatsapp|skype):[^\s<>"]`)
	// Go's regexp has no look-behind: the IPv4 form consumes the
	// character before it.
	ipv4 = regexp.MustCompile(`(?:^|[^0-9.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5}|/)`)
)

// Contains reports whether text holds a link.
func Contains(text string) bool {
	if !strings.ContainsAny(text, ".:") {
		return false // every form has a dot or a colon
	}
	if strings.Contains(text, "://") && schemeURL.MatchString(text) {
		return true
	}
	if strings.Contains(text, ":") && schemeURI.MatchString(text) {
		return true
	}
	digitDot := false
	for i := 0; i < len(text); i++ {
		if text[i] != '.' {
			continue
		}
		if www(text, i) || bareDomain(text, i) {
			return true
		}
		digitDot = digitDot || (i > 0 && text[i-1] >= '0' && text[i-1] <= '9')
	}
	return digitDot && ipv4.MatchString(text)
}

// www reports whether the dot at text[dot] ends a word "www" (any case)
// and is followed by something to visit.
func www(text string, dot int) bool {
	if dot < 3 || !strings.EqualFold(text[dot-3:dot], "www") || dot+1 >= len(text) {
		return false
	}
	if dot > 3 {
		if r, _ := utf8.DecodeLastRuneInString(text[:dot-3]); r < utf8.RuneSelf && (r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false // \b: ASCII word characters only, as in the regexps
		}
	}
	r, _ := utf8.DecodeRuneInString(text[dot+1:])
	return !unicode.IsSpace(r) && !strings.ContainsRune(`<>"`, r)
}

// bareDomain reports whether the dot at text[dot] ends a domain whose
// TLD is listed: "name.tld", "a.b.tld", not inside a longer word (the
// TLD is followed by no letter, digit, '-' or '_') nor after a stray dot,
// '-' or '_' ("ok...com", "_x.com"). Each label is 1-63 letters, digits
// and inner hyphens. The page's links.js says the same as one regexp.
func bareDomain(text string, dot int) bool {
	end := dot + 1
	for end < len(text) {
		r, n := utf8.DecodeRuneInString(text[end:])
		if !isLabel(r) && r != '_' {
			break
		}
		end += n
	}
	if !tldSet[strings.ToLower(text[dot+1:end])] {
		return false
	}
	// Walk back over the labels before the dot.
	at := dot
	for {
		start := at
		for start > 0 {
			r, n := utf8.DecodeLastRuneInString(text[:start])
			if !isLabel(r) {
				break
			}
			start -= n
		}
		label := text[start:at]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' || utf8.RuneCountInString(label) > 63 {
			return false
		}
		if start == 0 {
			return true
		}
		r, n := utf8.DecodeLastRuneInString(text[:start])
		switch {
		case r == '.':
			at = start - n // one more label, which must be there
		case r == '_':
			return false
		default:
			return true
		}
	}
}

func isLabel(r rune) bool {
	return r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsNumber(r)
}
