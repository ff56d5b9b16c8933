#!/bin/sh
# make dist: release files in dist/ for linux amd64 and arm64: the binary
# in a tarball (with the licence, README, example config, systemd unit, man
# page and shell completions), .deb and .rpm packages (nfpm.yaml), an SBOM
# of each binary (CycloneDX JSON), and SHA256SUMS. The same commit gives
# the same bytes: binaries built with -trimpath and no build ID, every
# timestamp the commit's. ARCHS picks the architectures (default: both).
set -eu
GO=${GO:-go}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
SBOM=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
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
# Tools for this machine: the SBOM's generator, and a stagebot that writes
# the man page and completions (the same for every architecture).
TOOLS=$DIST/build/tools
mkdir -p "$TOOLS/share"
GOBIN=$(cd "$TOOLS" && pwd) GOOS= GOARCH= $GO install $SBOM
$GO build -trimpath -ldflags "-X main.Version=$VERSION" -o "$TOOLS/stagebot" ./cmd/stagebot
"$TOOLS/stagebot" man | gzip -n -9 >"$TOOLS/share/stagebot.1.gz"
"$TOOLS/stagebot" completion bash >"$TOOLS/share/stagebot.bash"
"$TOOLS/stagebot" completion zsh >"$TOOLS/share/_stagebot"
"$TOOLS/stagebot" completion fish >"$TOOLS/share/stagebot.fish"
for ARCH in ${ARCHS:-amd64 arm64}; do
	BUILD=$DIST/build/$ARCH
	mkdir -p "$BUILD"
	CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH $GO build -trimpath -ldflags "-s -w -buildid= -X main.Version=$VERSION" -o "$BUILD/stagebot" ./cmd/stagebot
	cp "$TOOLS"/share/* "$BUILD/"
	name=stagebot_${PKG_VERSION}_linux_$ARCH
	# What the binary is made of, for this architecture's build.
	CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH "$TOOLS/cyclonedx-gomod" app -json -noserial -notimestamp -licenses \
		-main cmd/stagebot -output "$DIST/$name.cdx.json" . 2>"$BUILD/sbom.log" || { cat "$BUILD/sbom.log" >&2; exit 1; }
	cp "$DIST/$name.cdx.json" "$BUILD/sbom.cdx.json"
	# The packaged unit runs the packaged binary.
	sed 's#/usr/local/bin/stagebot#/usr/bin/stagebot#g' examples/systemd/stagebot.service >"$BUILD/stagebot.service"
	mkdir -p "$BUILD/$name/completions"
	cp "$BUILD/stagebot" "$BUILD/stagebot.service" "$TOOLS/share/stagebot.1.gz" LICENSE README.md config.example.yaml "$BUILD/$name/"
	cp "$TOOLS/share/stagebot.bash" "$TOOLS/share/_stagebot" "$TOOLS/share/stagebot.fish" "$BUILD/$name/completions/"
	cp -R docs "$BUILD/$name/docs"
	tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner -C "$BUILD" -cf - "$name" | gzip -n -9 >"$DIST/$name.tar.gz"
	sed -e "s#\${ARCH}#$ARCH#g" -e "s#\${BUILD}#$BUILD#g" -e "s#\${PKG_VERSION}#$PKG_VERSION#g" -e "s#\${SOURCE_DATE}#$SOURCE_DATE#g" \
		packaging/nfpm.yaml >"$BUILD/nfpm.yaml"
	for packager in deb rpm; do
		$GO run $NFPM package --config "$BUILD/nfpm.yaml" --packager $packager --target "$DIST/"
	done
done
rm -rf "$DIST/build"
cd "$DIST" && sha256sum -- *.tar.gz *.deb *.rpm *.cdx.json >SHA256SUMS
cat SHA256SUMS
