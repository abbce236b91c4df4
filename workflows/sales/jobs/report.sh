#!/bin/sh
# Print a summary of one day of ingested sales.
#
#   report.sh --day 20260101 [--data-dir /tmp/flowplan-examples]
#
# Reads <data-dir>/raw_<day>.csv (written by ingest.py); REGION comes from the environment.
set -eu

usage() {
    echo "usage: $0 --day YYYYMMDD [--data-dir DIR]" >&2
    exit 2
}

day=""
data_dir="/tmp/flowplan-examples"
while [ $# -gt 0 ]; do
    case "$1" in
        --day) [ $# -ge 2 ] || usage; day="$2"; shift 2 ;;
        --data-dir) [ $# -ge 2 ] || usage; data_dir="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "report: unknown argument: $1" >&2; usage ;;
    esac
done
case "$day" in
    [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;;
    *) echo "report: --day must be YYYYMMDD, got '$day'" >&2; usage ;;
esac

region="${REGION:-eu}"
input="$data_dir/raw_$day.csv"
if [ ! -f "$input" ]; then
    echo "report: input file not found: $input" >&2
    exit 1
fi

echo "Sales report for $day (region $region, run ${FLOWPLAN_RUN_ID:--})"
echo "source: $input"
awk -F, -v region="$region" '
    NR == 1 { next }
    $3 == region {
        orders++; units += $5; revenue += $7
        p_units[$4] += $5; p_rev[$4] += $7
    }
    END {
        printf "orders: %d  units: %d  revenue: %.2f\n", orders, units, revenue
        for (p in p_rev) printf "  %-14s units %3d  revenue %9.2f\n", p, p_units[p], p_rev[p]
    }
' "$input" | { read -r totals; echo "$totals"; sort; }
