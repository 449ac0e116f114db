// Links in chat text: the page's twin of internal/chatlink (same rules,
// same test table), used to show a link the node flagged as plain text
// that nobody can click or mistake for one. Spelled-out obfuscations
// ("example dot com") are out of scope, as on the node.

const TLDS = `com net org info biz io co me tv cc gg ly to xyz top club online site
  shop store app dev link live click icu vip fun space website tech pro
  ru de uk fr es nl pl br in cn jp kr au ca us eu ch se no fi dk at be cz
  tr ua kz ir vn id ph mx ar cl nz za gr pt ro hu sk bg rs
  onion ai gl bit ws su`.split(/\s+/).filter(Boolean).join('|');

const LINK = new RegExp(
  String.raw`\b[a-z][a-z0-9+.\-]{1,15}://[^\s<>"]+` +
  String.raw`|\b(?:mailto|magnet|tg|sms|tel|whatsapp|skype):[^\s<>"]+` +
  String.raw`|\bwww\.[^\s<>"]+` +
  String.raw`|(?<![\p{L}\p{N}.\-_])(?:[\p{L}\p{N}](?:[\p{L}\p{N}\-]{0,61}[\p{L}\p{N}])?\.)+(?:` + TLDS +
  String.raw`)(?:[:/?#][^\s<>"]*)?(?![\p{L}\p{N}\-_])` +
  String.raw`|(?<![\p{N}.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5}|/)[^\s<>"]*`,
  'giu');

// findLinks returns the [start, end) ranges of the links in text.
export function findLinks(text) {
  const s = String(text ?? '');
  const out = [];
  if (!/[.:]/.test(s)) return out;
  for (const m of s.matchAll(LINK)) out.push([m.index, m.index + m[0].length]);
  return out;
}

export function hasLink(text) {
  return findLinks(text).length > 0;
}

// defang breaks a link so that no browser, OS or messenger turns it back
// into one when it is shown or copied: "https[:]//example[.]com".
export function defang(link) {
  return String(link).replace(/\./g, '[.]').replace(/:/g, '[:]');
}

// plainParts splits text into [{text, link}] pieces, links defanged, for
// a caller that writes each with textContent (never an <a>, never HTML).
export function plainParts(text) {
  const s = String(text ?? '');
  const parts = [];
  let at = 0;
  for (const [a, b] of findLinks(s)) {
    if (a > at) parts.push({ text: s.slice(at, a), link: false });
    parts.push({ text: defang(s.slice(a, b)), link: true });
    at = b;
  }
  if (at < s.length) parts.push({ text: s.slice(at), link: false });
  return parts;
}
