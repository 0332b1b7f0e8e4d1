#!/bin/sh
# Run a command in a network namespace of its own, where only 127.0.0.1 answers:
# loopback up, plus a veth pair with a private address and no route out (glibc's
# AI_ADDRCONFIG ignores loopback, so without it even "127.0.0.1" fails to resolve
# for SLURM). Needs root; elsewhere the command runs in the machine's namespace.
if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null || ! command -v ip >/dev/null
then
    echo "note: no network namespace (needs root, unshare and ip): the service" \
        "tests run in the machine's own network" >&2
    exec "$@"
fi
exec unshare -n sh -c '
    ip link set lo up &&
    ip link add ns0 type veth peer name ns1 &&
    ip addr add 10.200.0.1/24 dev ns0 &&
    ip link set ns0 up && ip link set ns1 up &&
    exec "$@"' sh "$@"
