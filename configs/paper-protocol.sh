#!/usr/bin/env bash
# The protocol of Upadhyay, Busso & Lee (Interspeech 2024), end to end, for one model and
# one direction. Four classes (N/H/A/S), MSP-Podcast <-> BIIC-Podcast.
#
#   MODEL=microsoft/wavlm-large SOURCE=msp TARGET=biic bash configs/paper-protocol.sh
#
# Set MSP_ROOT and BIIC_ROOT to the corpus roots (Labels/labels_consensus.csv + Audios/).
# Extraction (GPU) is skipped when the caches are complete already; rerunning resumes.
set -euo pipefail
MODEL=${MODEL:-microsoft/wavlm-large}
SOURCE=${SOURCE:-msp}
TARGET=${TARGET:-biic}
MSP_ROOT=${MSP_ROOT:?set MSP_ROOT to the MSP-Podcast root}
BIIC_ROOT=${BIIC_ROOT:?set BIIC_ROOT to the BIIC-Podcast root}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
SEEDS=${SEEDS:-0-4}
WORK=${WORK:-work/$(basename "$MODEL")}
mkdir -p "$WORK"

# MSP-Podcast's Split_Set Test1 is read as split "test1"; other corpora's test split as "test".
if [ "$TARGET" = msp ]; then TARGET_TEST=${TARGET_TEST:-test1}; else TARGET_TEST=${TARGET_TEST:-test}; fi

root_of() { if [ "$1" = msp ]; then echo "$MSP_ROOT"; else echo "$BIIC_ROOT"; fi; }
format_of() { if [ "$1" = msp ]; then echo msp-podcast; else echo biic-podcast; fi; }

for corpus in "$SOURCE" "$TARGET"; do
    sers extract --model "$MODEL" --format "$(format_of "$corpus")" --manifest "$(root_of "$corpus")" \
        --out "$WORK/$corpus.zarr" --device "$DEVICE" --dtype "$DTYPE" --frame-layers none
done

OUT="$WORK/$SOURCE-to-$TARGET"
# Label-free similarity on the unlabelled target training split; the target test split is never read here.
sers similarity "$WORK/$SOURCE.zarr" "$WORK/$TARGET.zarr" -o "$OUT/similarity" \
    --source-split train --target-split train --max-utterances 20000
# One anchors.json for every method (--strategy both, the default): the top-3 single layers for lam,
# and for lam-gl the best contiguous groups of every size x count (2,3 x 1,2), which sers train
# chooses among per seed with λ, reading no target label (docs/method.md, "Choosing anchors").
sers anchor "$OUT/similarity/similarity.json" --measure coral --k 3 --exclude 0 -o "$OUT/anchors.json"

COMMON=(--source "$WORK/$SOURCE.zarr" --target "$WORK/$TARGET.zarr" --seeds "$SEEDS" --epochs 50
        --patience 8 --source-dev dev --target-train train --target-test "$TARGET_TEST" --jobs 4
        --overwrite)
# The ablations (anchors-only, groups-only: the same layers and heads without CORAL) are added by
# sers train, so the table shows what the alignment itself adds, with 95 % intervals.
sers train "${COMMON[@]}" --method last,wsum,coral,dann,lam,lam-gl --anchors "$OUT/anchors.json" -o "$OUT/runs"
sers report "$OUT/runs" --similarity "$OUT/similarity" --anchors "$OUT/anchors.json" -o "$OUT/report.html"
