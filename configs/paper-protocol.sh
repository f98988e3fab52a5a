#!/usr/bin/env bash
# The protocol of Upadhyay, Busso & Lee (Interspeech 2024), end to end, for one model and
# one direction. Four classes (N/H/A/S), MSP-Podcast <-> BIIC-Podcast.
#
#   MODEL=microsoft/wavlm-large SOURCE=msp TARGET=biic bash configs/paper-protocol.sh
#
# Set MSP_ROOT and BIIC_ROOT to the corpus roots (Labels/labels_consensus.csv + Audios/).
# Extraction (GPU) is skipped when the caches are complete already; rerunning resumes.
# The settings of every stage are in CONFIG (default: paper-protocol.toml beside this script);
# DEVICE, DTYPE and SEEDS, when set, override the file's.
set -euo pipefail
MODEL=${MODEL:-microsoft/wavlm-large}
SOURCE=${SOURCE:-msp}
TARGET=${TARGET:-biic}
MSP_ROOT=${MSP_ROOT:?set MSP_ROOT to the MSP-Podcast root}
BIIC_ROOT=${BIIC_ROOT:?set BIIC_ROOT to the BIIC-Podcast root}
CONFIG=${CONFIG:-$(dirname "$0")/paper-protocol.toml}
WORK=${WORK:-work/$(basename "$MODEL")}
mkdir -p "$WORK"
# Options typed on a command line override the config file's: only those the environment sets.
EXTRACT_OVERRIDES=() TRAIN_OVERRIDES=()
if [ -n "${DEVICE:-}" ]; then EXTRACT_OVERRIDES+=(--device "$DEVICE"); fi
if [ -n "${DTYPE:-}" ]; then EXTRACT_OVERRIDES+=(--dtype "$DTYPE"); fi
if [ -n "${SEEDS:-}" ]; then TRAIN_OVERRIDES+=(--seeds "$SEEDS"); fi

# MSP-Podcast's Split_Set Test1 is read as split "test1"; other corpora's test split as "test".
if [ "$TARGET" = msp ]; then TARGET_TEST=${TARGET_TEST:-test1}; else TARGET_TEST=${TARGET_TEST:-test}; fi

root_of() { if [ "$1" = msp ]; then echo "$MSP_ROOT"; else echo "$BIIC_ROOT"; fi; }
format_of() { if [ "$1" = msp ]; then echo msp-podcast; else echo biic-podcast; fi; }

for corpus in "$SOURCE" "$TARGET"; do
    sers extract --config "$CONFIG" --model "$MODEL" --format "$(format_of "$corpus")" \
        --manifest "$(root_of "$corpus")" --out "$WORK/$corpus.zarr" ${EXTRACT_OVERRIDES[@]+"${EXTRACT_OVERRIDES[@]}"}
done

OUT="$WORK/$SOURCE-to-$TARGET"
# Label-free similarity on the unlabelled target training split ([similarity]: at most 20000
# utterances per split); the target test split is never read here.
sers similarity --config "$CONFIG" "$WORK/$SOURCE.zarr" "$WORK/$TARGET.zarr" -o "$OUT/similarity"
# One anchors.json for every method (--strategy both, the default): the top-3 single layers for lam,
# and for lam-gl the best contiguous groups of every size x count (2,3 x 1,2), which sers train
# chooses among per seed with λ, reading no target label (docs/method.md, "Choosing anchors").
sers anchor --config "$CONFIG" "$OUT/similarity/similarity.json" -o "$OUT/anchors.json"

# The ablations (anchors-only, groups-only: the same layers and heads without CORAL) are added by
# sers train, so the table shows what the alignment itself adds, with 95 % intervals. The methods,
# seeds, epochs, patience, splits and jobs are the config's [train].
sers train --config "$CONFIG" --source "$WORK/$SOURCE.zarr" --target "$WORK/$TARGET.zarr" \
    --target-test "$TARGET_TEST" --anchors "$OUT/anchors.json" -o "$OUT/runs" --overwrite \
    ${TRAIN_OVERRIDES[@]+"${TRAIN_OVERRIDES[@]}"}
sers report --config "$CONFIG" "$OUT/runs" --similarity "$OUT/similarity" --anchors "$OUT/anchors.json" \
    -o "$OUT/report.html"
