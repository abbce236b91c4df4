#!/bin/sh
# Alert node of daily_sales: runs only when an upstream node failed.
#
#   alert.sh WORKFLOW RUN_ID DS
set -eu

workflow="${1:-${FLOWPLAN_WORKFLOW:-unknown}}"
run_id="${2:-${FLOWPLAN_RUN_ID:-unknown}}"
ds="${3:-${FLOWPLAN_DS:-unknown}}"

echo "ALERT: workflow $workflow run $run_id for $ds has a failed node; see its logs" >&2
