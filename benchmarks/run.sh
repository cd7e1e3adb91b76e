#!/usr/bin/env bash
# Runs the paired benchmarks of BENCHMARKS.md and prints their benchstat
# tables. A paired benchmark (internal/paired) runs the floor and the
# implementation in alternating ~5 ms batches inside one process and reports
# their ratios per round, x-wall and x-cpu, which survive a busy machine.
# Usage, from anywhere:
#
#	benchmarks/run.sh [ROUNDS] [OUTDIR] [PATTERN]
#
# ROUNDS (default 10) is -count: one round per run, 100 batch pairs each
# (-benchtime 100x, about 1 s plus a ~0.3 s warm-up). PATTERN (default
# 'VsFloor') is -bench: paired benchmarks are named Benchmark...VsFloor.
# internal/paired's own BenchmarkFloorVsFloor always runs too: the floor
# against itself (its ± is the noise of this run) and against itself plus
# 5 % (which must read 1.05).
#
# For each package, OUTDIR (default ./bench-out) gets NAME.txt, the raw
# benchmark lines, and NAME.stat.txt, benchstat's table of every metric; the
# ratio tables are printed. PostgreSQL and Redis benchmarks run when
# SELFSERVICE_TEST_POSTGRES and SELFSERVICE_TEST_REDIS are set, and skip
# otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-10}"
out="$(mkdir -p "${2:-bench-out}" && cd "${2:-bench-out}" && pwd)"
pattern="${3:-VsFloor}"
export PATH="$(go env GOPATH)/bin:$PATH"
# The newest golang.org/x/perf that the module proxy served when this was written.
command -v benchstat >/dev/null ||
	go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

# bench NAME DIR PACKAGE PATTERN: the paired benchmarks of one package. A
# package that fails (or does not build) is reported and the others still run;
# the script then exits 1.
failed=0
bench() {
	if (cd "$root/$2" && go test -run '^$' -bench "$4" -benchtime 100x -count "$rounds" "$3") >"$out/$1.txt" 2>&1; then
		echo "$1: done" >&2
	else
		echo "$1: FAILED, see $out/$1.txt" >&2
		failed=1
	fi
}
bench paired . ./internal/paired FloorVsFloor
bench idtoken . ./idtoken "$pattern"
bench middleware . ./middleware "$pattern"
bench root . . "$pattern"
bench peers benchmarks . "$pattern"

for f in paired idtoken middleware root peers; do
	grep -q ' x-wall' "$out/$f.txt" || continue
	benchstat "$out/$f.txt" >"$out/$f.stat.txt"
	echo "## $f: ratios to the floor (median of $rounds rounds, 95 % CI)"
	benchstat -filter '.unit:(x-wall OR x-cpu OR x-wall-sum OR x-cpu-sum)' "$out/$f.txt"
done
exit "$failed"
