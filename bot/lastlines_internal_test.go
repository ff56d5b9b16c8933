package bot

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLastLines(t *testing.T) {
	tests := []struct {
		name, body string
		max, n     int
		want       string
	}{
		{"short", "a\nb", 100, 0, "a\nb"},
		{"by lines", "1\n2\n3\n4", 100, 2, "…(earlier lines left out)\n3\n4"},
		{"fewer lines than asked", "1\n2", 100, 5, "1\n2"},
		{"by bytes, at a line's start", "aaaa\nbb\ncc", 6, 0, "…(earlier lines left out)\nbb\ncc"},
		{"one long line of wide characters", strings.Repeat("é", 10), 5, 0, "…(earlier lines left out)\néé"},
	}
	for _, tt := range tests {
		got := lastLines(tt.body, tt.max, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("%s: lastLines(%q, %d, %d) = %q, want %q", tt.name, tt.body, tt.max, tt.n, got, tt.want)
		}
	}
}
