#!/bin/sh
# On removal (not on upgrade) stop the service; its state stays in
# /var/lib/stagebot.
set -e
case "$1" in
	remove|0)
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl disable --now stagebot >/dev/null 2>&1 || true
		fi
		;;
esac
