package sfv

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseStringList(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  []string
		err   error
	}{
		{nil, nil, nil},
		{[]string{""}, nil, nil},
		{[]string{`"a"`}, []string{"a"}, nil},
		{[]string{`"moq-00", "chat"`}, []string{"moq-00", "chat"}, nil},
		{[]string{`"a" ,	"b"`}, []string{"a", "b"}, nil},
		{[]string{`  "a"  `}, []string{"a"}, nil},
		// every field line counts, combined with commas
		{[]string{`"a"`, `"b", "c"`}, []string{"a", "b", "c"}, nil},
		{[]string{`"a"`, ``}, nil, ErrSyntax}, // "a", is a trailing comma
		// parameters are parsed and ignored
		{[]string{`"a";q=1;v="x";b;t=tok;d=1.5;bs=:AQID:;bo=?1;dt=@1700000000;ds=%"caf%c3%a9", "b";*k`}, []string{"a", "b"}, nil},
		{[]string{`"es\"c\\ape"`}, []string{`es"c\ape`}, nil},
		// other types: the whole field is ignored
		{[]string{`moq-00`}, nil, ErrNotString},
		{[]string{`"a", tok`}, nil, ErrNotString},
		{[]string{`"a", 1`}, nil, ErrNotString},
		{[]string{`("a" "b")`}, nil, ErrNotString},
		{[]string{`"a", ?1`}, nil, ErrNotString},
		{[]string{`:AQID:`}, nil, ErrNotString},
		// syntax errors
		{[]string{`"a",`}, nil, ErrSyntax},
		{[]string{`"a" "b"`}, nil, ErrSyntax},
		{[]string{`"unterminated`}, nil, ErrSyntax},
		{[]string{`"bad\escape"`}, nil, ErrSyntax},
		{[]string{"\"tab\there\""}, nil, ErrSyntax},
		{[]string{"\"caf\xc3\xa9\""}, nil, ErrSyntax},
		{[]string{`"a";Q=1`}, nil, ErrSyntax},
		{[]string{`"a";q=`}, nil, ErrSyntax},
		{[]string{`"a";q=1.`}, nil, ErrSyntax},
		{[]string{`"a";q=1.2345`}, nil, ErrSyntax},
		{[]string{`"a";q=1234567890123456`}, nil, ErrSyntax},
		{[]string{`"a";q=:AQI:`}, nil, ErrSyntax}, // padding required
		{[]string{`"a";q=?2`}, nil, ErrSyntax},
		{[]string{`"a";q=@1.5`}, nil, ErrSyntax},
		{[]string{`"a";q=%"%C3%A9"`}, nil, ErrSyntax},
		{[]string{`"a";q=%"%ff"`}, nil, ErrSyntax},
		{[]string{`("a"`}, nil, ErrSyntax},
		{[]string{`tok, "a`}, nil, ErrSyntax}, // a syntax error wins over a wrong type
		{[]string{`,"a"`}, nil, ErrSyntax},
	} {
		got, err := ParseStringList(c.lines)
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) || !slices.Equal(got, c.want) {
			t.Errorf("ParseStringList(%q) = %q, %v; want %q, %v", c.lines, got, err, c.want, c.err)
		}
	}
}

func TestParseStringItem(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  string
		err   error
	}{
		{[]string{`"moq-00"`}, "moq-00", nil},
		{[]string{` "a";p=1 `}, "a", nil},
		{[]string{`""`}, "", nil},
		{[]string{`moq-00`}, "", ErrNotString}, // the draft -10..-12 Token form
		{[]string{`"a", "b"`}, "", ErrSyntax},
		{[]string{`"a"`, `"b"`}, "", ErrSyntax}, // two lines make a list
		{[]string{``}, "", ErrSyntax},
		{nil, "", ErrSyntax},
	} {
		got, err := ParseStringItem(c.lines)
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) || got != c.want {
			t.Errorf("ParseStringItem(%q) = %q, %v; want %q, %v", c.lines, got, err, c.want, c.err)
		}
	}
}

func TestFormat(t *testing.T) {
	s, err := FormatStringList([]string{"a", `q"b\`, ""})
	if err != nil || s != `"a", "q\"b\\", ""` {
		t.Fatalf("FormatStringList = %s, %v", s, err)
	}
	if _, err := FormatStringList([]string{"caf\u00e9"}); !errors.Is(err, ErrSyntax) {
		t.Fatalf("non-ASCII: %v", err)
	}
	if _, err := FormatString("a\nb"); !errors.Is(err, ErrSyntax) {
		t.Fatalf("control character: %v", err)
	}
	if s, err := FormatString("moq"); err != nil || s != `"moq"` {
		t.Fatalf("FormatString = %s, %v", s, err)
	}
}

func TestParseAllocs(t *testing.T) {
	lines := []string{`"moq-00";v=1, "chat"`}
	if n := testing.AllocsPerRun(100, func() { ParseStringItem([]string{`"moq-00";q=:AQID:`}) }); n != 0 {
		t.Errorf("ParseStringItem: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { ParseStringList(lines) }); n > 2 {
		t.Errorf("ParseStringList: %v allocs (the result slice only)", n)
	}
}

// FuzzParseStringList checks that parsing never panics, that a parsed
// list serializes and parses back to itself, and that the Item parser
// agrees with the List parser on one-member fields.
func FuzzParseStringList(f *testing.F) {
	for _, s := range []string{`"a"`, `"a", "b"`, `"a";q=1.5;b=?0, "b";d=@12;s=%"%c3%a9"`, `tok`, `("a" 1)`, `"a",`, `"es\"c"`, `:AQID:`, `"x";k=:AQ==:`} {
		f.Add(s, "")
	}
	f.Add(`"a"`, `"b"`)
	f.Fuzz(func(t *testing.T, a, b string) {
		lines := []string{a}
		if b != "" {
			lines = append(lines, b)
		}
		list, err := ParseStringList(lines)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrNotString) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		s, err := FormatStringList(list)
		if err != nil {
			t.Fatalf("parsed %q, cannot format it: %v", list, err)
		}
		again, err := ParseStringList([]string{s})
		if err != nil || !slices.Equal(again, list) {
			t.Fatalf("round trip %q -> %s -> %q, %v", list, s, again, err)
		}
		// A List of one String is that Item, but for trailing HTAB: a List
		// discards OWS after a member, the top level only SP (RFC 9651,
		// Sections 4.2 and 4.2.1).
		if b == "" && len(list) == 1 && !strings.ContainsAny(a, ",\t") {
			if item, err := ParseStringItem(lines); err != nil || item != list[0] {
				t.Fatalf("item %q, %v; list %q", item, err, list)
			}
		}
	})
}

func TestValidBase64(t *testing.T) {
	for _, s := range []string{"", "AQID", "AQ==", "AQI=", "AQIDBA==", "AB==", "////", "A===", "====", "AQ=D", "AQI", "A", "AQID=", "=AAA"} {
		_, err := base64.StdEncoding.DecodeString(s)
		if got := validBase64(s); got != (err == nil) {
			t.Errorf("validBase64(%q) = %v, encoding/base64 says %v", s, got, err)
		}
	}
}
