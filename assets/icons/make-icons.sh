#!/usr/bin/env bash
# Regenerates the tray icons (ImageMagick): a coloured disc per state with a white handset.
# ok = green, working = blue, attention = amber, error = red. PNGs at the sizes the trays use
# (16/20/24/32 Windows and Linux panels, 22/44 macOS menu bar, 48/64/128/256 high-DPI and
# installers) and one multi-size .ico for Windows.
set -euo pipefail
cd "$(dirname "$0")"
declare -A colour=([ok]='#2ea043' [working]='#1f6feb' [attention]='#d29922' [error]='#d03030')
for state in ok working attention error; do
  convert -size 256x256 xc:none \
    -fill "${colour[$state]}" -draw 'circle 128,128 128,6' \
    -stroke white -strokewidth 30 -fill none -draw 'arc 58,66 198,206 180,360' \
    -stroke none -fill white \
    -draw 'roundrectangle 40,128 100,184 16,16' -draw 'roundrectangle 156,128 216,184 16,16' \
    "PNG32:$state-256.png"
  for size in 16 20 22 24 32 44 48 64 128; do
    convert "$state-256.png" -resize "${size}x${size}" -depth 8 "PNG32:$state-$size.png"
  done
  convert "$state-16.png" "$state-20.png" "$state-24.png" "$state-32.png" "$state-48.png" "$state-256.png" "$state.ico"
done
