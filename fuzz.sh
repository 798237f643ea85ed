#!/usr/bin/env bash
# Runs the cargo-fuzz targets of the workspace, each for a fixed time, and fails if any of them
# finds a crash (a panic, a failed property, a timeout or running out of memory).
#
# Usage:   ./fuzz.sh [SECONDS] [TARGET...]
#          SECONDS  time per target, default 30 (CI runs `./fuzz.sh 10`)
#          TARGET   robot_frame, trigger and/or schedule; default all three
# Needs:   cargo-fuzz (`cargo install cargo-fuzz --version 0.13.2 --locked`). Works on the
#          stable toolchain: targets are built without a sanitizer (`-s none`).
# Env:     FUZZ_GROW_CORPUS=1  write new inputs into the corpus kept in the repository
#                              (then minimise it, see below); by default they go to a
#                              temporary folder and the repository is left untouched.
#          FUZZ_KEEP_LOGS=1    keep the per-target logs (their folder is printed).
#
# The targets (each fuzz folder has a README.md):
#   crates/protocol/fuzz   robot_frame  robot and server frames, metadata, job reports
#   crates/packages/fuzz   trigger      trigger validator, package names and paths
#   crates/scheduler/fuzz  schedule     Schedule objects and cron expressions
#
# Each fuzz folder is its own cargo workspace (not a member of the main one); all build into
# target/fuzz (FUZZ_TARGET_DIR to change it). A crash leaves its input in
# <fuzz folder>/artifacts/<target>/; replay it with `cargo fuzz run -s none <target> <file>` from
# that folder, shrink it with `cargo fuzz tmin -s none <target> <file>`. After growing a corpus,
# minimise it with `cargo fuzz cmin -s none <target>` so the repository keeps a few hundred small
# files.

set -euo pipefail

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]   (SECONDS must be a positive integer)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# target -> fuzz folder, in the order they run.
declare -A folders=(
    [robot_frame]="crates/protocol/fuzz"
    [trigger]="crates/packages/fuzz"
    [schedule]="crates/scheduler/fuzz"
)
all_targets=(robot_frame trigger schedule)
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi
for target in "${targets[@]}"; do
    if [[ -z "${folders[$target]:-}" ]]; then
        echo "unknown target '$target' (known: ${all_targets[*]})" >&2
        exit 2
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 2
fi

logs="$(mktemp -d "${TMPDIR:-/tmp}/rpa-fuzz.XXXXXX")"
cleanup() {
    if [[ "${FUZZ_KEEP_LOGS:-0}" == 1 ]]; then
        echo "logs kept in $logs"
    else
        rm -rf "$logs"
    fi
}
trap cleanup EXIT

# One build folder for all targets: they share most dependencies (built with the fuzzing
# instrumentation, so not with the workspace's own target folder).
target_dir="${FUZZ_TARGET_DIR:-$root/target/fuzz}"

failed=()
summary=()
for target in "${targets[@]}"; do
    folder="$root/${folders[$target]}"
    log="$logs/$target.log"

    # libFuzzer writes new inputs to the first corpus folder and only reads the others.
    corpus=("$folder/corpus/$target")
    if [[ "${FUZZ_GROW_CORPUS:-0}" != 1 ]]; then
        mkdir -p "$logs/new-$target"
        corpus=("$logs/new-$target" "${corpus[@]}")
    fi

    # -timeout: an input running longer than 10 s counts as a crash (a hang is a finding).
    # -rss_limit_mb: memory above 2 GiB counts as a crash.
    # -print_final_stats: prints stat::number_of_executed_units at the end.
    libfuzzer_args=(
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
    )
    if [[ -f "$folder/$target.dict" ]]; then
        libfuzzer_args+=(-dict="$folder/$target.dict")
    fi

    echo "==> $target: ${seconds}s in ${folders[$target]}"
    status=0
    (cd "$folder" && cargo fuzz run -s none --target-dir "$target_dir" "$target" "${corpus[@]}" \
        -- "${libfuzzer_args[@]}") \
        >"$log" 2>&1 || status=$?

    executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    executions="${executions:-unknown}"
    if [[ $status -eq 0 ]]; then
        line="$target: ok, $executions executions in ${seconds}s"
    else
        line="$target: FAILED (exit $status), $executions executions"
        failed+=("$target")
        # What went wrong (a panic message, a timeout or an out-of-memory report), then the end
        # of the log: the saved input and how to reproduce it, as cargo-fuzz prints them.
        echo "---- $target: failure ----"
        grep -m 1 -A 4 -E "panicked at|ALARM: working on the last Unit|out-of-memory|ERROR: libFuzzer" \
            "$log" || true
        echo "---- last 40 lines of the $target log ----"
        tail -n 40 "$log"
        echo "---- artifacts in ${folders[$target]}/artifacts/$target/ ----"
        ls -1 "$folder/artifacts/$target/" 2>/dev/null || true
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "==> summary"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
