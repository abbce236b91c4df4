#!/bin/sh
# Keep a copy of the live index before it is rebuilt.
#
#   snapshot.sh WORK_DIR INDEX [RUN_ID]
#
# Copies WORK_DIR/INDEX.json to WORK_DIR/snapshots/INDEX.RUN_ID.json and keeps the five
# most recent snapshots. A missing live index (first build) is not an error.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 WORK_DIR INDEX [RUN_ID]" >&2
    exit 2
fi
work_dir=$1
index=$2
run_id=${3:-${FLOWPLAN_RUN_ID:-manual}}

live="$work_dir/$index.json"
snapdir="$work_dir/snapshots"
mkdir -p "$snapdir"

if [ ! -f "$live" ]; then
    echo "snapshot: no live index $live yet, nothing to keep"
    exit 0
fi

cp "$live" "$snapdir/$index.$run_id.json"
echo "snapshot: $live -> $snapdir/$index.$run_id.json"

# Keep the five newest snapshots of this index.
ls -1t "$snapdir" | grep "^$index\." | tail -n +6 | while read -r old; do
    rm -f "$snapdir/$old"
    echo "snapshot: removed old snapshot $old"
done
