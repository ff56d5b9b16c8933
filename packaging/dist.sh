#!/bin/sh
# make dist: release files in dist/ for linux amd64 and arm64: the binary
# in a tarball (with the licence, README, example config and systemd unit),
# .deb and .rpm packages (nfpm.yaml), and SHA256SUMS. The same commit gives
# the same bytes: binaries built with -trimpath and no build ID, every
# timestamp the commit's. ARCHS picks the architectures (default: both).
set -eu
GO=${GO:-go}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
case "$VERSION" in
v[0-9]*) PKG_VERSION=${VERSION#v} ;;
*) PKG_VERSION=0.0.0~git$(git rev-parse --short=12 HEAD) ;; # no tag yet
esac
EPOCH=$(git log -1 --format=%ct)
SOURCE_DATE=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
DIST=${DIST:-dist}
export SOURCE_DATE_EPOCH=$EPOCH SOURCE_DATE PKG_VERSION
rm -rf "$DIST"
mkdir -p "$DIST"
for ARCH in ${ARCHS:-amd64 arm64}; do
	BUILD=$DIST/build/$ARCH
	mkdir -p "$BUILD"
	CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH $GO build -trimpath -ldflags "-s -w -buildid= -X main.Version=$VERSION" -o "$BUILD/stagebot" ./cmd/stagebot
	# The packaged unit runs the packaged binary.
	sed 's#/usr/local/bin/stagebot#/usr/bin/stagebot#g' examples/systemd/stagebot.service >"$BUILD/stagebot.service"
	name=stagebot_${PKG_VERSION}_linux_$ARCH
	mkdir -p "$BUILD/$name"
	cp "$BUILD/stagebot" "$BUILD/stagebot.service" LICENSE README.md config.example.yaml "$BUILD/$name/"
	tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner -C "$BUILD" -cf - "$name" | gzip -n -9 >"$DIST/$name.tar.gz"
	sed -e "s#\${ARCH}#$ARCH#g" -e "s#\${BUILD}#$BUILD#g" -e "s#\${PKG_VERSION}#$PKG_VERSION#g" -e "s#\${SOURCE_DATE}#$SOURCE_DATE#g" \
		packaging/nfpm.yaml >"$BUILD/nfpm.yaml"
	for packager in deb rpm; do
		$GO run $NFPM package --config "$BUILD/nfpm.yaml" --packager $packager --target "$DIST/"
	done
done
rm -rf "$DIST/build"
cd "$DIST" && sha256sum -- *.tar.gz *.deb *.rpm >SHA256SUMS
cat SHA256SUMS
