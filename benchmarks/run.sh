#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in interleaved rounds (each
# benchmark once per round, so that noise on a shared machine hits all of
# them alike) and prints benchstat tables. Usage, from anywhere:
#
#	benchmarks/run.sh [ROUNDS] [OUTDIR]     # default 8 rounds, ./bench-out
#
# PostgreSQL and Redis benchmarks run when SELFSERVICE_TEST_POSTGRES and
# SELFSERVICE_TEST_REDIS are set, and skip otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-8}"
out="$(mkdir -p "${2:-bench-out}" && cd "${2:-bench-out}" && pwd)"
command -v benchstat >/dev/null || go install golang.org/x/perf/cmd/benchstat@latest
export PATH="$(go env GOPATH)/bin:$PATH"

cd "$root"
go test -c -o "$out/middleware.test" ./middleware
go test -c -o "$out/root.test" .
(cd benchmarks && go test -c -o "$out/peers.test" .)
: >"$out/middleware.txt"
: >"$out/root.txt"
: >"$out/peers.txt"
for i in $(seq "$rounds"); do
	(cd middleware && "$out/middleware.test" -test.run '^$' -test.bench . -test.benchmem) >>"$out/middleware.txt"
	"$out/root.test" -test.run '^$' -test.bench . -test.benchmem >>"$out/root.txt"
	(cd benchmarks && "$out/peers.test" -test.run '^$' -test.bench . -test.benchmem) >>"$out/peers.txt"
	echo "round $i of $rounds done" >&2
done

for f in middleware root peers; do
	echo "## $f"
	benchstat "$out/$f.txt"
done
echo "## ratios to the floor"
benchstat -filter '.name:Token' -col /impl "$out/middleware.txt"
benchstat -filter '.name:Peers' -col /impl "$out/peers.txt"
