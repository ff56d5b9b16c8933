#!/bin/sh
# Not started on install: the config needs a chat platform and targets.
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
cat <<'MSG'
stagebot is installed. Next:
  1. edit /etc/stagebot/config.yaml (chat platform, targets) and /etc/stagebot/env (secrets)
  2. stagebot check -c /etc/stagebot/config.yaml
  3. systemctl enable --now stagebot
MSG
