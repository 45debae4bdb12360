package main

import "strings"

// sfString and sfStringList encode Structured Field strings (RFC 9651,
// Section 3.3.3) and lists of them, as WT-Protocol and
// WT-Available-Protocols carry.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func sfStringList(l []string) string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = sfString(s)
	}
	return strings.Join(parts, ", ")
}

// parseSFStringList parses a list of sf-strings, skipping parameters; a
// malformed list yields nil.
func parseSFStringList(v string) []string {
	var out []string
	rest := strings.TrimSpace(v)
	for rest != "" {
		s, n, ok := scanSFString(rest)
		if !ok {
			return nil
		}
		out = append(out, s)
		rest = rest[n:]
		// Parameters: ;key[=value]
		for strings.HasPrefix(rest, ";") {
			i := strings.IndexAny(rest, ",")
			if i < 0 {
				rest = ""
			} else {
				rest = rest[i:]
			}
		}
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if rest == "" {
			return nil
		}
	}
	return out
}

// parseSFString parses one sf-string item (parameters ignored).
func parseSFString(v string) (string, bool) {
	v = strings.TrimSpace(v)
	s, n, ok := scanSFString(v)
	if !ok {
		return "", false
	}
	rest := v[n:]
	if rest != "" && rest[0] != ';' {
		return "", false
	}
	return s, true
}

func scanSFString(v string) (string, int, bool) {
	if v == "" || v[0] != '"' {
		return "", 0, false
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch ch := v[i]; {
		case ch == '\\':
			if i+1 >= len(v) || v[i+1] != '"' && v[i+1] != '\\' {
				return "", 0, false
			}
			i++
			b.WriteByte(v[i])
		case ch == '"':
			return b.String(), i + 1, true
		case ch < 0x20 || ch > 0x7e:
			return "", 0, false
		default:
			b.WriteByte(ch)
		}
	}
	return "", 0, false
}
