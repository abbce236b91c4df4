#!/bin/sh
# Disk probe: how full is the file system that holds PATH? Writes the result as JSON.
#
#   probe_disk.sh --path DIR --out FILE.json [--max-used PERCENT]
#
# The probe itself succeeds whenever it could measure; "ok" in the JSON says whether the
# disk is healthy (used% below the threshold). summarize.py decides what to do with it.
set -eu

usage() {
    echo "usage: $0 --path DIR --out FILE.json [--max-used PERCENT]" >&2
    exit 2
}

path=""
out=""
max_used=95
while [ $# -gt 0 ]; do
    case "$1" in
        --path) [ $# -ge 2 ] || usage; path="$2"; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
        --max-used) [ $# -ge 2 ] || usage; max_used="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "probe_disk: unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$path" ] && [ -n "$out" ] || usage
case "$max_used" in
    ''|*[!0-9]*) echo "probe_disk: --max-used must be an integer, got '$max_used'" >&2; exit 2 ;;
esac

mkdir -p "$path" "$(dirname "$out")"
# POSIX output: Filesystem 1024-blocks Used Available Capacity Mounted-on
line=$(df -P "$path" | awk 'NR == 2 { print $2, $4, $5, $6 }')
set -- $line
total_kb=$1
avail_kb=$2
used_pct=${3%\%}
mount=$4

if [ "$used_pct" -lt "$max_used" ]; then ok=true; else ok=false; fi

tmp="$out.$$.tmp"
printf '{"probe": "disk", "ok": %s, "path": "%s", "mount": "%s", "used_pct": %s, "max_used_pct": %s, "total_kb": %s, "avail_kb": %s}\n' \
    "$ok" "$path" "$mount" "$used_pct" "$max_used" "$total_kb" "$avail_kb" > "$tmp"
mv "$tmp" "$out"
echo "probe_disk: $mount used ${used_pct}% (max ${max_used}%) ok=$ok -> $out"
