#!/bin/sh
# One shard of the nightly health report, as the Nomad job (nightly.nomad.json) runs it on each of its
# allocations: shard NOMAD_ALLOC_INDEX+1 of SHARDS, all shards under one run id (the periodic job's launch).
# The first shard then waits for the others' summaries and merges them into the night's one report.
set -eu
: "${SHARDS:?}" "${NOMAD_ALLOC_INDEX:?}" "${NOMAD_JOB_ID:?}" "${INVENTORY:?}" "${REPORT_DIR:?}"
index=$((NOMAD_ALLOC_INDEX + 1))
run_id=$(printf '%s' "$NOMAD_JOB_ID" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-60)
status=0
alice-acceptance nightly --inventory "$INVENTORY" --report-dir "$REPORT_DIR/shards" --shard "$index/$SHARDS" \
  --run-id "$run_id" -q || status=$?
[ "$status" -ne 5 ] || status=0  # no node fell in this slice: an empty shard is not a failure
if [ "$index" -eq 1 ]; then
  deadline=$(($(date +%s) + ${MERGE_WAIT_S:-3600}))
  while [ "$(find "$REPORT_DIR/shards" -path "*/$run_id-s*of$SHARDS/summary.json" | wc -l)" -lt "$SHARDS" ] &&
        [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 10
  done
  # a missing shard is not hidden: the merged report says the run is incomplete and which shard is missing
  find "$REPORT_DIR/shards" -path "*/$run_id-s*of$SHARDS/summary.json" -print0 |
    xargs -0 alice-acceptance merge --report-dir "$REPORT_DIR" --keep "${KEEP_NIGHTS:-30}" || status=1
fi
exit "$status"
