#!/bin/sh
# Check the freshly built index and swap it in as the live one.
#
#   publish.sh WORK_DIR INDEX
#
# Refuses an empty or malformed WORK_DIR/INDEX.next.json; otherwise renames it to
# WORK_DIR/INDEX.json (an atomic replace on the same file system).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 WORK_DIR INDEX" >&2
    exit 2
fi
work_dir=$1
index=$2
next="$work_dir/$index.next.json"
live="$work_dir/$index.json"

if [ ! -s "$next" ]; then
    echo "publish: new index $next is missing or empty" >&2
    exit 1
fi
if ! head -c 64 "$next" | grep -q "^{\"index\":\"$index\""; then
    echo "publish: $next does not look like an index of '$index'" >&2
    exit 1
fi

mv -f "$next" "$live"
echo "publish: $live is live ($(wc -c < "$live" | tr -d ' ') bytes)"
