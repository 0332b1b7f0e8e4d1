#!/bin/sh
# The whole test suite, as `make test` runs it: the tests that need no system
# service, spread over the cores, and beside them the service tests (PostgreSQL,
# SLURM, Chromium), in a network namespace where only 127.0.0.1 answers. Both
# groups run to the end whatever the other's result; the service tests' report
# follows the other's; the exit status is non-zero if either failed.
#   usage: tests/run_suite.sh PYTEST CAN_RUN_SERVICES
pytest=$1
services_ok=$2
status=0
services=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
trap '[ -n "$services" ] && kill -TERM "$services" 2>/dev/null; exit 130' INT TERM
if [ -n "$services_ok" ]; then
    # three at a time (they mostly wait on their servers), SLURM's alone
    sh tests/loopback_only.sh "$pytest" -m services --numprocesses=3 \
        --dist loadgroup -p no:cacheprovider >"$log" 2>&1 &
    services=$!
else
    echo "skipped: the service tests (-m services: PostgreSQL, SLURM, Chromium)," \
        "whose Debian packages need root or sudo to install: run make test as root"
fi
"$pytest" -m "not services" --numprocesses=auto --maxprocesses=4 --dist worksteal \
    || status=$?
if [ -n "$services" ]; then
    wait "$services" || status=$?
    echo "--- the service tests (-m services)"
    cat "$log"
fi
exit $status
