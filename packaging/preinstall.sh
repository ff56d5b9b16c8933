#!/bin/sh
# The stagebot user and group own the state in /var/lib/stagebot and read
# /etc/stagebot; they exist before the files are unpacked.
set -e
if ! getent group stagebot >/dev/null 2>&1; then
	groupadd --system stagebot
fi
if ! getent passwd stagebot >/dev/null 2>&1; then
	useradd --system --gid stagebot --home-dir /var/lib/stagebot --no-create-home \
		--shell /usr/sbin/nologin --comment "stagebot, staging refreshes from chat" stagebot
fi
