package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// setup learns who the bot is, joins the configured rooms and notes
// which are encrypted.
func (a *Adapter) setup(ctx context.Context) error {
	who, err := a.cli.Whoami(ctx)
	if err != nil {
		return err
	}
	a.cli.UserID = who.UserID
	a.mu.Lock()
	a.me = who.UserID
	a.mu.Unlock()
	joined, err := a.cli.JoinedRooms(ctx)
	if err != nil {
		return err
	}
	// Rooms joined before the sync position was kept are known; a room
	// joined now is not, so that its history is not taken for commands.
	a.mu.Lock()
	for _, r := range joined.JoinedRooms {
		a.joined[r] = true
	}
	a.mu.Unlock()
	for _, r := range a.opts.Rooms {
		resp, err := a.cli.JoinRoom(ctx, r, nil)
		if err != nil {
			if c := status(err); c == http.StatusForbidden || c == http.StatusNotFound {
				return fmt.Errorf("matrix: cannot join room %s: %w (invite %s to it, or check chat.matrix.rooms)", r, err, who.UserID)
			}
			return err
		}
		a.mu.Lock()
		a.rooms[resp.RoomID] = true
		a.mu.Unlock()
		enc, err := a.isEncrypted(ctx, resp.RoomID)
		if errors.Is(err, errNotEncryptionState) {
			a.log.Warn("matrix: cannot tell whether the room is encrypted; an encrypted message will be reported when one arrives", "room", r, "err", err)
			err = nil
		}
		if err != nil {
			return err
		}
		if enc {
			a.mu.Lock()
			a.encrypted[resp.RoomID] = true
			a.mu.Unlock()
			a.log.Error("matrix: room is end-to-end encrypted; stagebot can neither read nor write there",
				"room", r, "fix", "use an unencrypted control room (encryption cannot be turned off in a room once on)")
		}
	}
	// Besides its rooms the bot joins only direct chats; a room of more
	// people it is still in (one taken out of the config, one joined by
	// hand) is ignored, or every line typed there would be a command.
	for _, r := range joined.JoinedRooms {
		a.mu.Lock()
		configured := a.rooms[r]
		a.mu.Unlock()
		if configured {
			continue
		}
		m, err := a.cli.JoinedMembers(ctx, r)
		if err != nil {
			return err
		}
		if len(m.Joined) == 2 {
			a.mu.Lock()
			a.direct[r] = true
			a.mu.Unlock()
			continue
		}
		a.log.Info("matrix: ignoring a room that is neither configured nor a direct chat", "room", r, "members", len(m.Joined))
	}
	return nil
}

func (a *Adapter) isEncrypted(ctx context.Context, room id.RoomID) (bool, error) {
	var content map[string]any
	err := a.cli.StateEvent(ctx, room, event.StateEncryption, "", &content)
	switch {
	case err == nil && encryptionContent(content):
		return true, nil
	case err == nil:
		return false, errNotEncryptionState
	case errors.Is(err, mautrix.MNotFound):
		return false, nil
	}
	return false, err
}

// errNotEncryptionState: the homeserver answered the state request with
// something that is not an m.room.encryption event (Dendrite does so for a
// room the bot is not in yet), so whether the room is encrypted is unknown.
var errNotEncryptionState = errors.New("the homeserver's answer is not the room's encryption state (is the bot in the room yet?)")

// encryptionContent reports whether content is an m.room.encryption
// event's: it names an algorithm.
func encryptionContent(content map[string]any) bool {
	alg, _ := content["algorithm"].(string)
	return alg != ""
}

// Check connects, learns who the token belongs to and looks at each room
// without joining it: for `stagebot check`.
func Check(ctx context.Context, o Options) (user string, problems []string, err error) {
	cli, err := mautrix.NewClient(o.Homeserver, "", o.Token)
	if err != nil {
		return "", nil, err
	}
	cli.DefaultHTTPRetries = 0
	who, err := cli.Whoami(ctx)
	if err != nil {
		if tokenRefused(err) {
			return "", nil, ErrToken
		}
		return "", nil, err
	}
	for _, r := range o.Rooms {
		roomID := id.RoomID(r)
		if strings.HasPrefix(r, "#") {
			res, err := cli.ResolveAlias(ctx, id.RoomAlias(r))
			if err != nil {
				problems = append(problems, fmt.Sprintf("room %s: the alias does not resolve (%v)", r, err))
				continue
			}
			roomID = res.RoomID
		}
		var content map[string]any
		err := cli.StateEvent(ctx, roomID, event.StateEncryption, "", &content)
		switch {
		case err == nil && !encryptionContent(content):
			problems = append(problems, fmt.Sprintf("room %s: %s is not in it yet, so whether it is encrypted is unknown; it joins at start if the room is public or it is invited", r, who.UserID))
		case err == nil:
			problems = append(problems, fmt.Sprintf("room %s is end-to-end encrypted: stagebot cannot read or write there; use an unencrypted control room", r))
		case errors.Is(err, mautrix.MNotFound):
		case errors.Is(err, mautrix.MForbidden):
			problems = append(problems, fmt.Sprintf("room %s: %s is not in it yet; it joins at start if the room is public or it is invited", r, who.UserID))
		default:
			problems = append(problems, fmt.Sprintf("room %s: %v", r, err))
		}
	}
	return string(who.UserID), problems, nil
}

// invited accepts an invitation to a configured room, or to a direct chat
// from someone AcceptDirect knows, unless it is encrypted; others are
// declined.
func (a *Adapter) invited(ctx context.Context, room id.RoomID, inv *mautrix.SyncInvitedRoom) {
	a.mu.Lock()
	me, configured := a.me, a.rooms[room]
	a.mu.Unlock()
	var from id.UserID
	direct, encrypted := false, false
	for _, e := range inv.State.Events {
		switch e.Type {
		case event.StateEncryption:
			encrypted = true
		case event.StateMember:
			if e.StateKey != nil && id.UserID(*e.StateKey) == me {
				from = e.Sender
				var c struct {
					IsDirect bool `json:"is_direct"`
				}
				json.Unmarshal(e.Content.VeryRaw, &c)
				direct = c.IsDirect
			}
		}
	}
	accept := configured || (direct && a.opts.AcceptDirect != nil && a.opts.AcceptDirect(string(from)))
	reason := ""
	switch {
	case !accept:
		reason = "stagebot only joins its configured rooms and direct chats from people it knows"
	case encrypted && !configured:
		accept, reason = false, "stagebot cannot read encrypted rooms: start the direct chat with encryption off, or use the team's control room"
	}
	if !accept {
		a.log.Info("matrix: declined an invitation", "room", room, "from", from, "why", reason)
		if _, err := a.cli.LeaveRoom(ctx, room, &mautrix.ReqLeave{Reason: reason}); err != nil {
			a.log.Warn("matrix: decline an invitation", "room", room, "err", err)
		}
		return
	}
	if _, err := a.cli.JoinRoomByID(ctx, room); err != nil {
		a.log.Warn("matrix: accept an invitation", "room", room, "err", err)
		return
	}
	a.mu.Lock()
	if !configured {
		a.direct[room] = true
	}
	if encrypted {
		a.encrypted[room] = true
	}
	a.mu.Unlock()
	a.log.Info("matrix: joined", "room", room, "direct", !configured)
}
