package discord

import (
	"testing"

	"github.com/bwmarrin/discordgo"
)

// Anyone may choose any display name on Discord; the unique username goes
// beside one that differs from it.
func TestUser_ShowsTheUsernameBesideAChosenName(t *testing.T) {
	for _, tt := range []struct {
		in   discordgo.User
		want string
	}{
		{discordgo.User{ID: "1", Username: "alice"}, "alice"},
		{discordgo.User{ID: "1", Username: "alice", GlobalName: "alice"}, "alice"},
		{discordgo.User{ID: "2", Username: "mallory", GlobalName: "alice"}, "alice (@mallory)"},
	} {
		if got := user(&tt.in).Display(); got != tt.want {
			t.Errorf("%+v shows as %q, want %q", tt.in, got, tt.want)
		}
	}
}
