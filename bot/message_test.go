package bot_test

import (
	"testing"

	"github.com/stagebot/stagebot/bot"
)

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"ünïcödé text", 5, "ünïc…"},
		{"✓✓✓✓", 3, "✓✓…"},
	} {
		if got := bot.Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
