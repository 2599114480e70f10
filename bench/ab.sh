#!/bin/bash
# A/B of one Ferrule build on hello: bench/ab.sh VENV embedded|daemon [auth|access]
# (auth: behind --auth-user-script apps/auth_users.py, every request with Basic credentials;
# access: with --access-log in the combined format)
# APP=NAME serves bench/apps/NAME.py instead of hello (upload sends its 1 MiB POST);
# CONNECTIONS=N opens N connections instead of 32.
# Server pinned to CPU 0, wrk -t1 -c$CONNECTIONS -d10s on CPU 1, system calls counted with perf over 5 s
# (divided by the requests wrk completed), and CPU µs per request over the measured run:
# the whole process tree's, and the supervisor's alone (in daemon mode: the front end's).
# PERTHREAD=1 also prints the system calls per thread. SERVER=granian measures Granian
# (VENV/bin/granian, 1 worker, 8 blocking threads) the same way (MODE is ignored).
VENV=$1; MODE=$2; PORT=$((20000 + RANDOM % 10000)); ROOT=$(mktemp -d)
EXTRA=""; [ "$MODE" = embedded ] && EXTRA="--embedded-mode"
HEADER=()
APP=${APP:-hello}; CONNECTIONS=${CONNECTIONS:-32}
[ "$APP" = upload ] && HEADER=(-s "$(dirname "$0")/upload.lua")
if [ "$3" = access ]; then
    EXTRA="$EXTRA --access-log --access-log-format combined"
fi
if [ "$3" = auth ]; then
    EXTRA="$EXTRA --auth-user-script $(dirname "$0")/apps/auth_users.py"
    HEADER=(-H "Authorization: Basic $(printf bench:secret | base64)")
fi
if [ "${SERVER:-ferrule}" = granian ]; then
    taskset -c 0 $VENV/bin/granian --interface wsgi --workers 1 --blocking-threads 8 --host 127.0.0.1 --port $PORT --working-dir "$(dirname "$0")/apps" --no-access-log --log-level warning $APP:application >/dev/null 2>&1 &
else
    taskset -c 0 $VENV/bin/python -m ferrule start-server "$(dirname "$0")/apps/$APP.py" --processes 1 --threads 8 --host 127.0.0.1 --port $PORT --server-root $ROOT $EXTRA >/dev/null 2>&1 &
fi
SUP=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
PIDS=$(echo $SUP $(cat /proc/$SUP/task/$SUP/children) | tr ' ' ',')
taskset -c 1 wrk -t1 -c$CONNECTIONS -d2s "${HEADER[@]}" http://127.0.0.1:$PORT/ >/dev/null 2>&1
# utime+stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
tree_ticks() { local total=0; for pid in ${PIDS//,/ }; do total=$((total + $(ticks $pid))); done; echo $total; }
# The kernel's share (stime) of the whole tree.
system_ticks() { local total=0; for pid in ${PIDS//,/ }; do total=$((total + $(awk '{print $15}' /proc/$pid/stat))); done; echo $total; }
SUP_BEFORE=$(ticks $SUP); TREE_BEFORE=$(tree_ticks); SYSTEM_BEFORE=$(system_ticks)
taskset -c 1 wrk -t1 -c$CONNECTIONS -d10s --latency "${HEADER[@]}" http://127.0.0.1:$PORT/ > $ROOT/wrk.txt 2>&1 &
WRK=$!
sleep 3
perf stat -x, -e raw_syscalls:sys_enter -p $PIDS -- sleep 5 2> $ROOT/perf.txt; [ -n "$PERTHREAD" ] && perf stat -x, --per-thread -e raw_syscalls:sys_enter -p $PIDS -- sleep 3 2>&1 | sort -t, -k2 -n -r | head -30
wait $WRK
SUP_TICKS=$(( $(ticks $SUP) - SUP_BEFORE )); TREE_TICKS=$(( $(tree_ticks) - TREE_BEFORE ))
SYSTEM_TICKS=$(( $(system_ticks) - SYSTEM_BEFORE ))
HZ=$(getconf CLK_TCK)
RPS=$(grep Requests/sec $ROOT/wrk.txt | awk '{print $2}')
SYS=$(grep raw_syscalls $ROOT/perf.txt | cut -d, -f1)
kill -TERM $SUP; wait $SUP 2>/dev/null
python3 -c "
rps = $RPS; requests = rps * 10; us = 1e6 / $HZ
print('${SERVER:-ferrule}', '$MODE $3', '$APP', 'c$CONNECTIONS', '$VENV'.split('/')[-1], 'req/s', rps, 'syscalls/req', round($SYS / (rps * 5), 2),
      'cpu_us/req', round($TREE_TICKS * us / requests, 1), 'of_it_kernel_us/req', round($SYSTEM_TICKS * us / requests, 1),
      'supervisor_us/req', round($SUP_TICKS * us / requests, 1))"
rm -rf $ROOT
