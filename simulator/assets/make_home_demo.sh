#!/bin/sh
# Regenerates home_demo.wav (16 kHz mono 16-bit): 0.5 s silence, "Turn on the kitchen
# light.", 2.5 s silence, "What's the status of the agent?". Needs espeak-ng and sox.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() {
    espeak-ng -v en-us -s 160 -w "$tmp/raw.wav" "$1"
    # 16 kHz mono 16-bit, leading and trailing silence trimmed so the gaps are exact
    sox -D -R "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$2" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
}
say "Turn on the kitchen light." "$tmp/a.wav"
say "What's the status of the agent?" "$tmp/b.wav"
sox -D -R -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/s1.wav" trim 0 0.5
sox -D -R -n -r 16000 -c 1 -b 16 -e signed-integer "$tmp/s2.wav" trim 0 2.5
sox -D -R "$tmp/s1.wav" "$tmp/a.wav" "$tmp/s2.wav" "$tmp/b.wav" "$here/home_demo.wav"
