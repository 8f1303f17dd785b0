#!/usr/bin/env bash
# macOS: wrap the .app bundle that `make package` builds on a Mac (dist/rsvg-desktop.app) in a DMG.
# Needs macOS (hdiutil). Not built by this project's CI (Linux only): see packaging/README.md.
# Unsigned: users open it with right-click → Open the first time, or sign it with your Developer ID:
#   codesign --deep --force --options runtime --sign "Developer ID Application: ..." dist/rsvg-desktop.app
set -euo pipefail
cd "$(dirname "$0")/../.."
app=dist/rsvg-desktop.app
[ -d "$app" ] || { echo "build the app first: make package (on macOS)" >&2; exit 2; }
version=$(.venv/bin/python -c 'import rsvg_desktop; print(rsvg_desktop.__version__)')
staging=$(mktemp -d)
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
hdiutil create -volname "rsvg-desktop $version" -srcfolder "$staging" -ov -format UDZO \
  "dist/rsvg-desktop-$version.dmg"
rm -rf "$staging"
echo "dist/rsvg-desktop-$version.dmg"
