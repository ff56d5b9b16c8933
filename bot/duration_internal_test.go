package bot

import (
	"testing"
	"time"
)

func TestFmtDur(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{300 * time.Microsecond, "1ms"},
		{5 * time.Millisecond, "5ms"},
		{999 * time.Millisecond, "999ms"},
		{time.Second, "1s"},
		{1500 * time.Millisecond, "1.5s"},
		{9*time.Second + 960*time.Millisecond, "10s"},
		{10 * time.Second, "10s"},
		{20 * time.Second, "20s"},
		{59 * time.Second, "59s"},
		{60 * time.Second, "1m"},
		{90 * time.Second, "1m30s"},
		{10 * time.Minute, "10m"},
		{59*time.Minute + 29*time.Second, "59m29s"},
		{59*time.Minute + 59*time.Second + 600*time.Millisecond, "1h"},
		{time.Hour, "1h"},
		{time.Hour + 30*time.Minute, "1h30m"},
		{2*time.Hour + 29*time.Second, "2h"},
		{24 * time.Hour, "1d"},
		{26 * time.Hour, "1d2h"},
		{7 * 24 * time.Hour, "1w"},
		{9 * 24 * time.Hour, "1w2d"},
		{30 * 24 * time.Hour, "4w2d"},
		{-90 * time.Second, "-1m30s"},
	} {
		if got := fmtDur(tt.in); got != tt.want {
			t.Errorf("fmtDur(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFmtAge(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{0, "less than a minute ago"},
		{40 * time.Second, "less than a minute ago"},
		{90 * time.Second, "1m30s ago"},
		{3 * 24 * time.Hour, "3d ago"},
	} {
		if got := fmtAge(tt.in); got != tt.want {
			t.Errorf("fmtAge(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
