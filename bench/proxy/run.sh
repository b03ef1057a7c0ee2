#!/usr/bin/env bash
# bench/proxy/run.sh: rvs's socket data plane against HAProxy (mode tcp) and nginx
# (stream module), side by side in one run on 127.0.0.1, plus a direct-to-backend
# baseline. Each proxy gets CPU 1 alone (taskset -c 1, one thread / one worker);
# the load generator and every backend share CPU 0. For each proxy: memory per
# idle connection, connections per second, latency (loaded and unloaded, minus
# the direct baseline), bulk throughput, CPU time per connection and per MB; in
# rounds (direct, haproxy, nginx, rvs, again), medians in a table, then the
# rvs/haproxy and rvs/nginx ratios. See bench/proxy/README.md.
#
# Usage: bench/proxy/run.sh [--duration SECS] [--only haproxy,nginx,rvs] [--quick]
#                           [--rounds N] [--concurrency C] [--idle-conns N] [--keep]
set -euo pipefail

usage() {
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	cat <<'EOF'

Options:
  --duration SECS     measured seconds of each cps run (default 6; --quick: 2)
  --only LIST         proxies to run, comma-separated from haproxy,nginx,rvs
                      (default: all three; the direct baseline always runs)
  --quick             one short round, 2,000 idle connections: a smoke test
  --rounds N          rounds of cps, latency and bulk runs (default 3; --quick: 1)
  --concurrency C     connections in flight in the cps run (default 64)
  --idle-conns N      idle connections for the memory figure (default 10000; --quick: 2000)
  --keep              keep the temporary directory (configs, logs, raw JSON)
Environment: BENCH_PORT_BASE (default 21000) moves every port used; RVSD_BIN and
RVSADM_BIN benchmark another build of rvs.
EOF
}

# ---------------------------------------------------------------- options
DURATION=""
ROUNDS=""
ONLY="haproxy,nginx,rvs"
QUICK=0
CONC=64
IDLE_CONNS=""
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
	--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
	--only) ONLY="${2:?--only needs a value}"; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--concurrency) CONC="${2:?--concurrency needs a value}"; shift 2 ;;
	--idle-conns) IDLE_CONNS="${2:?--idle-conns needs a value}"; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

if [ "$QUICK" = 1 ]; then
	: "${DURATION:=2}"
	: "${ROUNDS:=1}"
	DEFAULT_IDLE_CONNS=2000
	WARMUP=0.5
	LAT_DURATION=1
	BULK_BYTES=$((256 << 20))
	IDLE_HOLD=2
else
	: "${DURATION:=6}"
	: "${ROUNDS:=3}"
	DEFAULT_IDLE_CONNS=10000
	WARMUP=1
	LAT_DURATION=3
	BULK_BYTES=$((1 << 30))
	IDLE_HOLD=4
fi
LAT_CONC=1     # the unloaded latency run: one connection at a time
BULK_STREAMS=4
REQ_BYTES=64
RESP_BYTES=256

PROXIES=()
IFS=',' read -r -a wanted <<<"$ONLY"
for p in "${wanted[@]}"; do
	case "$p" in
	haproxy | nginx | rvs) PROXIES+=("$p") ;;
	"") ;;
	*) echo "run.sh: --only takes haproxy, nginx, rvs; got '$p'" >&2; exit 2 ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds takes a positive integer" >&2; exit 2; }
for v in "$DURATION" "$CONC" ${IDLE_CONNS:+"$IDLE_CONNS"}; do
	[[ "$v" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "run.sh: not a number: $v" >&2; exit 2; }
done

if [ "$(nproc)" -lt 2 ]; then
	echo "run.sh: needs at least 2 CPUs (proxy on CPU 1, load on CPU 0); nproc = $(nproc)" >&2
	exit 1
fi

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$REPO"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
LOADGEN="$TARGET_DIR/release/rvs-loadgen"
# RVSD_BIN / RVSADM_BIN: benchmark another build of rvs (another branch's target dir).
RVSD="${RVSD_BIN:-$TARGET_DIR/release/rvsd}"
RVSADM="${RVSADM_BIN:-$TARGET_DIR/release/rvsadm}"

log() { printf '== %s\n' "$*" >&2; }
warn() { printf 'run.sh: %s\n' "$*" >&2; }
has() { local x; for x in "${PROXIES[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }

# ---------------------------------------------------------------- ports
BASE="${BENCH_PORT_BASE:-21000}"
RR_PORTS=($((BASE + 1)) $((BASE + 2)) $((BASE + 3)) $((BASE + 4)))   # reqresp backends
BULK_PORTS=($((BASE + 101)) $((BASE + 102)))                          # bulk backends
HOLD_PORTS=($((BASE + 201)) $((BASE + 202)))                          # hold backends
# Each proxy listens on its own three ports (cps, bulk, idle), so no proxy meets
# the TIME_WAIT sockets of the one before.
front_port() { # proxy kind(0 cps, 1 bulk, 2 idle)
	local i
	case "$1" in haproxy) i=0 ;; nginx) i=1 ;; rvs) i=2 ;; *) return 1 ;; esac
	echo $((BASE + 1000 + 10 * i + $2))
}
join_addrs() { local out="" p; for p in "$@"; do out+="${out:+,}127.0.0.1:$p"; done; echo "$out"; }

# ---------------------------------------------------------------- limits
# N proxied connections are 2N descriptors in the proxy alone. Raise the limit as far
# as this machine lets us (some sandboxes refuse even root a hard limit above 20,000).
if [ "$(id -u)" = 0 ]; then
	ulimit -Hn 1048576 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" = unlimited ] && NOFILE=1048576
# What one single-process proxy can hold: two descriptors per connection, plus a
# margin for listeners, logs and the like.
FD_ROOM=$(((NOFILE - 300) / 2))
if [ -z "$IDLE_CONNS" ]; then
	IDLE_CONNS=$DEFAULT_IDLE_CONNS
	if [ "$IDLE_CONNS" -gt "$FD_ROOM" ]; then
		IDLE_CONNS=$((FD_ROOM / 100 * 100))
		warn "ulimit -n is $NOFILE and cannot be raised: $IDLE_CONNS idle connections instead of $DEFAULT_IDLE_CONNS"
	fi
elif [ "$IDLE_CONNS" -gt "$FD_ROOM" ]; then
	warn "ulimit -n is $NOFILE: a single-process proxy cannot hold $IDLE_CONNS idle connections (at most ~$FD_ROOM)"
fi
# Proxied connections each proxy may hold (HAProxy maxconn; nginx worker_connections
# counts both sides): room for the idle test, within the descriptor limit.
PROXY_MAXCONN=$((2 * IDLE_CONNS + 10000 < FD_ROOM ? 2 * IDLE_CONNS + 10000 : FD_ROOM))

# ---------------------------------------------------------------- install, build
need=()
if has haproxy && ! command -v haproxy >/dev/null; then need+=(haproxy); fi
if has nginx; then
	command -v nginx >/dev/null || need+=(nginx)
	[ -e /usr/share/nginx/modules/ngx_stream_module.so ] || [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] ||
		need+=(libnginx-mod-stream)
fi
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "building rvs-loadgen and rvsd (release)"
cargo build --release -q -p rvs-loadgen -p rvsd

# ---------------------------------------------------------------- processes
TMP="$(mktemp -d /tmp/rvs-proxy-bench.XXXXXX)"
PIDS=()

# Every descendant of a pid (nginx's workers, say). One pass over /proc: field 4
# of /proc/PID/stat is the parent, after the command name in parentheses.
descendants() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
		{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); parent[$1] = f[2] }
		END {
			n = 1; q[1] = root
			for (i = 1; i <= n; i++) for (c in parent) if (parent[c] == q[i]) { q[++n] = c; print c }
		}'
}

stop_pid() { # pid: TERM, wait up to 5 s, then KILL (with its descendants)
	local pid="$1" kids i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kids="$(descendants "$pid")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086 # one word per pid
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	# Children that outlived their parent (never expected).
	for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	warn "process $pid did not stop"
}

cleanup() {
	local pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	if [ "$KEEP" = 1 ]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_bg() { # name command...: starts in the background, logs to $TMP/name.log
	# The command must be a program (taskset, env, ...), not a shell function, so
	# that $! is the process itself (taskset and env exec it) and not a subshell.
	local name="$1"
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	LAST_PID=$!
}

forget_pid() { # pid: no longer ours to stop
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

listening() { # port: is something listening on 127.0.0.1 (or any) at it?
	local hex
	hex="$(printf '%04X' "$1")"
	grep -qE "^ *[0-9]+: [0-9A-F]{8}:$hex 00000000:0000 0A " /proc/net/tcp
}

wait_listen() { # timeout_s pid port...: all ports listening while pid lives
	local limit="$1" pid="$2" p deadline
	shift 2
	deadline=$((SECONDS + limit))
	for p in "$@"; do
		until listening "$p"; do
			kill -0 "$pid" 2>/dev/null || return 1
			[ "$SECONDS" -lt "$deadline" ] || return 1
			sleep 0.05
		done
	done
}

established_to() { # port...: established connections whose local port is one of these
	local hexes=() p
	for p in "$@"; do hexes+=("$(printf '%04X' "$p")"); done
	awk -v ports="${hexes[*]}" '
		BEGIN { n = split(ports, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
		$4 == "01" { split($2, l, ":"); if (l[2] in want) c++ }
		END { print c + 0 }' /proc/net/tcp
}

rss_kb() { # pid: VmRSS of it and all its descendants, kB
	local total=0 pid v
	for pid in "$1" $(descendants "$1"); do
		v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

cpu_ticks() { # cpuN: "busy total" jiffies (user nice system irq softirq; idle iowait; steal left out)
	awk -v c="$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 }' /proc/stat
}

busy_pct() { # "busy total" before, after
	local b0 t0 b1 t1
	read -r b0 t0 <<<"$1"
	read -r b1 t1 <<<"$2"
	awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN { printf "%.1f", (t > 0 ? 100 * b / t : 0) }'
}

jfield() { # json key: a scalar field of a flat JSON line
	sed -n "s/.*\"$2\":\"\{0,1\}\([^,}\"]*\).*/\1/p" <<<"$1" | head -n 1
}


# ---------------------------------------------------------------- backends
log "backends on CPU 0: reqresp ${RR_PORTS[*]}, bulk ${BULK_PORTS[*]}, hold ${HOLD_PORTS[*]}"
# Every port must be free: a listener left by something else would answer in our place.
for p in "${RR_PORTS[@]}" "${BULK_PORTS[@]}" "${HOLD_PORTS[@]}" \
	"$(front_port haproxy 0)" "$(front_port haproxy 1)" "$(front_port haproxy 2)" \
	"$(front_port nginx 0)" "$(front_port nginx 1)" "$(front_port nginx 2)" \
	"$(front_port rvs 0)" "$(front_port rvs 1)" "$(front_port rvs 2)"; do
	if listening "$p"; then
		warn "port $p on 127.0.0.1 is already in use; stop what listens there or set BENCH_PORT_BASE"
		exit 1
	fi
done

# One process per group, one listener per backend: a single process serving the four
# reqresp backends costs CPU 0 less per connection than four processes (fewer
# context switches), which leaves more of CPU 0 for the clients.
BACKEND_PIDS=()
ids=()
for i in "${!RR_PORTS[@]}"; do ids+=("rr-$((i + 1))"); done
start_bg backend-reqresp taskset -c 0 "$LOADGEN" backend --mode reqresp \
	--listen "$(join_addrs "${RR_PORTS[@]}")" --id "$(IFS=,; echo "${ids[*]}")" \
	--request-bytes "$REQ_BYTES" --response-bytes "$RESP_BYTES"
for p in "${RR_PORTS[@]}"; do BACKEND_PIDS+=("$LAST_PID:$p"); done
start_bg backend-bulk taskset -c 0 "$LOADGEN" backend --mode bulk --listen "$(join_addrs "${BULK_PORTS[@]}")" \
	--bytes "$BULK_BYTES"
for p in "${BULK_PORTS[@]}"; do BACKEND_PIDS+=("$LAST_PID:$p"); done
start_bg backend-hold taskset -c 0 "$LOADGEN" backend --mode hold --listen "$(join_addrs "${HOLD_PORTS[@]}")"
for p in "${HOLD_PORTS[@]}"; do BACKEND_PIDS+=("$LAST_PID:$p"); done
for bp in "${BACKEND_PIDS[@]}"; do
	if ! wait_listen 10 "${bp%%:*}" "${bp##*:}" || ! kill -0 "${bp%%:*}" 2>/dev/null; then
		warn "backend on port ${bp##*:} did not start (port in use? try BENCH_PORT_BASE):"
		cat "$TMP"/backend-*.log >&2
		exit 1
	fi
done

# ---------------------------------------------------------------- proxies
NGINX_MODULE=""
for m in /usr/share/nginx/modules/ngx_stream_module.so /usr/lib/nginx/modules/ngx_stream_module.so; do
	[ -e "$m" ] && { NGINX_MODULE="$m"; break; }
done

write_haproxy_conf() {
	local f="$TMP/haproxy.cfg" i
	{
		echo "global"
		echo "    nbthread 1"
		echo "    maxconn $PROXY_MAXCONN"
		echo "    pidfile $TMP/haproxy.pid"
		echo "defaults"
		echo "    mode tcp"
		echo "    balance roundrobin"
		echo "    maxconn $PROXY_MAXCONN"
		echo "    timeout connect 5s"
		echo "    timeout client 120s"
		echo "    timeout server 120s"
		echo "listen cps"
		echo "    bind 127.0.0.1:$(front_port haproxy 0)"
		i=0; for p in "${RR_PORTS[@]}"; do i=$((i + 1)); echo "    server rr$i 127.0.0.1:$p"; done
		echo "listen bulk"
		echo "    bind 127.0.0.1:$(front_port haproxy 1)"
		i=0; for p in "${BULK_PORTS[@]}"; do i=$((i + 1)); echo "    server bulk$i 127.0.0.1:$p"; done
		echo "listen idle"
		echo "    bind 127.0.0.1:$(front_port haproxy 2)"
		i=0; for p in "${HOLD_PORTS[@]}"; do i=$((i + 1)); echo "    server hold$i 127.0.0.1:$p"; done
	} >"$f"
	echo "$f"
}

write_nginx_conf() {
	local f="$TMP/nginx/nginx.conf" p
	mkdir -p "$TMP/nginx/logs"
	{
		[ -n "$NGINX_MODULE" ] && echo "load_module $NGINX_MODULE;"
		echo "worker_processes 1;"
		echo "worker_rlimit_nofile $NOFILE;"
		echo "pid $TMP/nginx/nginx.pid;"
		echo "error_log $TMP/nginx/logs/error.log warn;"
		echo "events { worker_connections $((2 * PROXY_MAXCONN + 100)); }"
		echo "stream {"
		echo "    proxy_connect_timeout 5s;"
		echo "    proxy_timeout 120s;"
		echo "    upstream cps {"; for p in "${RR_PORTS[@]}"; do echo "        server 127.0.0.1:$p;"; done; echo "    }"
		echo "    upstream bulk {"; for p in "${BULK_PORTS[@]}"; do echo "        server 127.0.0.1:$p;"; done; echo "    }"
		echo "    upstream idle {"; for p in "${HOLD_PORTS[@]}"; do echo "        server 127.0.0.1:$p;"; done; echo "    }"
		echo "    server { listen 127.0.0.1:$(front_port nginx 0) backlog=4096; proxy_pass cps; }"
		echo "    server { listen 127.0.0.1:$(front_port nginx 1) backlog=4096; proxy_pass bulk; }"
		echo "    server { listen 127.0.0.1:$(front_port nginx 2) backlog=4096; proxy_pass idle; }"
		echo "}"
	} >"$f"
	echo "$f"
}

PROXY_PID=""
start_proxy() { # name: starts it on CPU 1, sets PROXY_PID; fails with a reason on stderr
	local name="$1" conf sock f
	PROXY_PID=""
	case "$name" in
	haproxy)
		conf="$(write_haproxy_conf)"
		haproxy -c -q -f "$conf" >"$TMP/haproxy-check.log" 2>&1 || { cat "$TMP/haproxy-check.log" >&2; return 1; }
		start_bg haproxy taskset -c 1 haproxy -db -f "$conf"
		PROXY_PID=$LAST_PID
		;;
	nginx)
		conf="$(write_nginx_conf)"
		nginx -t -q -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$conf" >"$TMP/nginx-check.log" 2>&1 ||
			{ cat "$TMP/nginx-check.log" >&2; return 1; }
		start_bg nginx taskset -c 1 nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$conf" -g 'daemon off;'
		PROXY_PID=$LAST_PID
		;;
	rvs)
		sock="$TMP/rvsd.sock"
		local plane=()
		# Ask for the socket plane by name where rvsd has a choice of planes.
		if "$RVSD" --help 2>/dev/null | grep -q -- '--data-plane'; then plane=(--data-plane socket); fi
		start_bg rvs env RVS_SOCKET="$sock" taskset -c 1 "$RVSD" --no-state --socket "$sock" "${plane[@]}" --plane-threads 1
		PROXY_PID=$LAST_PID
		local deadline=$((SECONDS + 10))
		until [ -S "$sock" ]; do
			if ! kill -0 "$PROXY_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
				warn "rvsd did not start (no socket data plane in this build yet? it needs --plane-threads):"
				sed 's/^/    rvsd: /' "$TMP/rvs.log" | head -n 8 >&2
				return 1
			fi
			sleep 0.05
		done
		local kind ports vip
		: >"$TMP/rvsadm.log"
		for kind in 0 1 2; do
			case $kind in 0) ports=("${RR_PORTS[@]}") ;; 1) ports=("${BULK_PORTS[@]}") ;; 2) ports=("${HOLD_PORTS[@]}") ;; esac
			vip="127.0.0.1:$(front_port rvs "$kind")"
			RVS_SOCKET="$sock" "$RVSADM" -A -t "$vip" -s rr >>"$TMP/rvsadm.log" 2>&1 ||
				{ warn "rvsadm -A -t $vip failed:"; sed 's/^/    /' "$TMP/rvsadm.log" >&2; return 1; }
			for p in "${ports[@]}"; do
				RVS_SOCKET="$sock" "$RVSADM" -a -t "$vip" -r "127.0.0.1:$p" -m >>"$TMP/rvsadm.log" 2>&1 ||
					{ warn "rvsadm -a -t $vip -r 127.0.0.1:$p -m failed:"; sed 's/^/    /' "$TMP/rvsadm.log" >&2; return 1; }
			done
		done
		;;
	esac
	if ! wait_listen 10 "$PROXY_PID" "$(front_port "$name" 0)" "$(front_port "$name" 1)" "$(front_port "$name" 2)"; then
		warn "$name is not listening on its ports $(front_port "$name" 0)-$(front_port "$name" 2):"
		for f in "$TMP/$name.log" "$TMP/nginx/logs/error.log"; do
			[ -s "$f" ] && sed "s/^/    $name: /" "$f" | tail -n 8 >&2
		done
		if [ "$name" = rvs ]; then
			warn "(rvsd took the virtual services but nothing listens on them: no socket data plane yet?)"
		fi
		return 1
	fi
}

stop_proxy() {
	[ -n "$PROXY_PID" ] || return 0
	stop_pid "$PROXY_PID"
	forget_pid "$PROXY_PID"
	PROXY_PID=""
}

# ---------------------------------------------------------------- measurements
# R[name.key]: the values of one figure, one per round, separated by spaces.
declare -A R
RAW="$TMP/results.jsonl"
HZ="$(getconf CLK_TCK)"

put() { # name key value: appends a round's value (nothing if empty)
	[ -n "$3" ] || return 0
	R[$1.$2]="${R[$1.$2]:+${R[$1.$2]} }$3"
}
last() { # name key: the latest round's value
	local v="${R[$1.$2]:-}"
	echo "${v##* }"
}
calc() { # awk-program a b: runs it on a and b; prints nothing (and succeeds) if either is missing
	if [ -n "$2" ] && [ -n "$3" ]; then awk -v a="$2" -v b="$3" "BEGIN { $1 }"; fi
}
num0() { [ -n "$1" ] && echo "$1" || echo 0; }

proc_ticks() { # pid: user + system jiffies of it and all its descendants (threads included)
	local pid total=0 v
	[ -n "$1" ] || return 0
	for pid in "$1" $(descendants "$1"); do
		# After the ") " that ends the command name: state is field 1, utime 12, stime 13.
		v="$(sed -n 's/^.*) //p' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

OUT="" BUSY0="" BUSY1="" PROC_TICKS=""
sampled() { # name label warmup command...: runs a client; its JSON line into OUT, and from
	# warmup seconds in to its end: CPU 0 and CPU 1 busy % into BUSY0/BUSY1, the proxy's
	# own CPU time (jiffies) into PROC_TICKS
	local name="$1" label="$2" warm="$3" pid c0 c1 p0 out_file="$TMP/client.out"
	shift 3
	"$@" >"$out_file" &
	pid=$!
	PIDS+=("$pid")
	sleep "$warm"
	c0="$(cpu_ticks cpu0)"; c1="$(cpu_ticks cpu1)"; p0="$(proc_ticks "$PROXY_PID")"
	wait "$pid" || true
	forget_pid "$pid"
	BUSY0="$(busy_pct "$c0" "$(cpu_ticks cpu0)")"
	BUSY1="$(busy_pct "$c1" "$(cpu_ticks cpu1)")"
	PROC_TICKS=""
	if [ -n "$p0" ]; then PROC_TICKS=$(($(proc_ticks "$PROXY_PID") - p0)); fi
	OUT="$(tail -n 1 "$out_file")"
	echo "{\"proxy\":\"$name\",\"round\":$ROUND,\"run\":\"$label\",\"busy_cpu0\":$BUSY0,\"busy_cpu1\":$BUSY1,\"proxy_ticks\":${PROC_TICKS:-null},\"hz\":$HZ,\"result\":${OUT:-null}}" >>"$RAW"
}

run_cps() { # name targets concurrency duration warmup: one cps run, its figures into R
	local name="$1" targets="$2" conc="$3" dur="$4" warm="$5" c="c$3" conns cps
	sampled "$name" "cps_$c" "$warm" taskset -c 0 "$LOADGEN" cps --target "$targets" --concurrency "$conc" \
		--duration "$dur" --warmup "$warm" --request-bytes "$REQ_BYTES" --response-bytes "$RESP_BYTES"
	if [ -z "$OUT" ]; then
		put "$name" "errors_$c" "no result"
		return 0
	fi
	cps="$(jfield "$OUT" cps)"
	conns="$(jfield "$OUT" connections)"
	put "$name" "cps_$c" "$cps"
	put "$name" "errors_$c" "$(jfield "$OUT" errors)"
	put "$name" "p50_$c" "$(jfield "$OUT" p50_us)"
	put "$name" "p99_$c" "$(jfield "$OUT" p99_us)"
	put "$name" "cpu0_$c" "$BUSY0"
	put "$name" "cpu1_$c" "$BUSY1"
	# CPU time per connection: the proxy's own, and all of CPU 1's (busy x time / work).
	put "$name" "proc_us_$c" "$(calc "if (b > 0) printf \"%.1f\", a * 1e6 / $HZ / b" "$PROC_TICKS" "$conns")"
	put "$name" "cpu1_us_$c" "$(calc 'if (b > 0) printf "%.1f", a * 1e4 / b' "$BUSY1" "$cps")"
	# Added latency: minus the direct run of the same round.
	put "$name" "add50_$c" "$(calc 'printf "%.1f", a - b' "$(last "$name" "p50_$c")" "$(last direct "p50_$c")")"
	put "$name" "add99_$c" "$(calc 'printf "%.1f", a - b' "$(last "$name" "p99_$c")" "$(last direct "p99_$c")")"
	R[$name.backends_$c]="$(sed -n 's/.*"backends":{\([^}]*\)}.*/\1/p' <<<"$OUT")"
}

run_bulk() { # name targets: one bulk run, its figures into R
	local name="$1" targets="$2" bytes gbit
	sampled "$name" bulk 0 taskset -c 0 "$LOADGEN" bulk --target "$targets" --streams "$BULK_STREAMS" --bytes "$BULK_BYTES"
	if [ -z "$OUT" ]; then
		put "$name" bulk_bad "no result"
		return 0
	fi
	bytes="$(jfield "$OUT" total_bytes)"
	gbit="$(jfield "$OUT" gbit_s)"
	put "$name" gbit "$gbit"
	put "$name" bulk_bad "$(($(num0 "$(jfield "$OUT" errors)") + $(num0 "$(jfield "$OUT" length_mismatches)") + $(num0 "$(jfield "$OUT" checksum_failures)")))"
	put "$name" cpu0_bulk "$BUSY0"
	put "$name" cpu1_bulk "$BUSY1"
	put "$name" proc_us_mb "$(calc "if (b > 0) printf \"%.1f\", a * 1e6 / $HZ / (b / 1e6)" "$PROC_TICKS" "$bytes")"
	put "$name" cpu1_us_mb "$(calc 'if (b > 0) printf "%.1f", a * 1e4 / (b * 125)' "$BUSY1" "$gbit")"
}

measure() { # name cps-targets bulk-targets
	local name="$1"
	log "$name: cps, $CONC in flight, ${WARMUP}s warm-up + ${DURATION}s"
	run_cps "$name" "$2" "$CONC" "$DURATION" "$WARMUP"
	log "$name: latency, $LAT_CONC in flight, ${LAT_DURATION}s"
	run_cps "$name" "$2" "$LAT_CONC" "$LAT_DURATION" 0.5
	log "$name: bulk, $BULK_STREAMS streams x $BULK_BYTES bytes"
	run_bulk "$name" "$3"
}

measure_idle() { # name: memory per idle connection, from RSS before and after
	local name="$1" before after ready n out_file deadline lg
	out_file="$TMP/idle-$name.out"
	before="$(rss_kb "$PROXY_PID")"
	taskset -c 0 "$LOADGEN" idle --target "127.0.0.1:$(front_port "$name" 2)" \
		--conns "$IDLE_CONNS" --hold "$IDLE_HOLD" >"$out_file" &
	lg=$!
	PIDS+=("$lg")
	deadline=$((SECONDS + 60))
	ready=""
	until [ -n "$ready" ]; do
		ready="$(sed -n 's/^{"ready":\([0-9]*\)}$/\1/p' "$out_file" 2>/dev/null | head -n 1)"
		if [ -z "$ready" ]; then
			if ! kill -0 "$lg" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
				warn "$name: idle connections never became ready"
				stop_pid "$lg"; forget_pid "$lg"
				return 1
			fi
			sleep 0.05
		fi
	done
	# The client's connect completes in the proxy's accept queue; wait until the
	# proxy has opened its side to the hold backends too.
	deadline=$((SECONDS + 10))
	n=0
	while :; do
		n="$(established_to "${HOLD_PORTS[@]}")"
		[ "$n" -ge "$ready" ] || [ "$SECONDS" -ge "$deadline" ] && break
		sleep 0.1
	done
	sleep 0.5
	after="$(rss_kb "$PROXY_PID")"
	wait "$lg" 2>/dev/null || true
	forget_pid "$lg"
	echo "{\"proxy\":\"$name\",\"run\":\"idle\",\"ready\":$ready,\"backend_side\":$n,\"rss_before_kb\":$before,\"rss_after_kb\":$after,\"result\":$(tail -n 1 "$out_file")}" >>"$RAW"
	put "$name" idle_ready "$ready"
	put "$name" idle_backend "$n"
	put "$name" rss_before "$before"
	put "$name" rss_after "$after"
	put "$name" idle_closed "$(jfield "$(tail -n 1 "$out_file")" closed_by_peer)"
	if [ "$ready" -gt 0 ]; then
		put "$name" mem_per_conn "$(awk -v a="$after" -v b="$before" -v n="$ready" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
	fi
	if [ "$ready" -lt "$IDLE_CONNS" ] || [ "$n" -lt "$ready" ]; then
		warn "$name: only $ready of $IDLE_CONNS idle connections opened, $n reached the hold backends"
	fi
}

# ---------------------------------------------------------------- the run
START_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
START_TIME="$(date '+%F %T')"
# Is anything else running? (The load average still counts the last few minutes.)
c0="$(cpu_ticks cpu0)"; c1="$(cpu_ticks cpu1)"
sleep 1
IDLE_BUSY0="$(busy_pct "$c0" "$(cpu_ticks cpu0)")"
IDLE_BUSY1="$(busy_pct "$c1" "$(cpu_ticks cpu1)")"
log "start $START_TIME, load $START_LOAD, CPU 0/1 busy before the run: $IDLE_BUSY0% / $IDLE_BUSY1%"
if awk -v a="$IDLE_BUSY0" -v b="$IDLE_BUSY1" 'BEGIN { exit !(a > 10 || b > 10) }'; then
	warn "the machine is busy before the run (CPU 0 $IDLE_BUSY0%, CPU 1 $IDLE_BUSY1%): other work skews every figure"
fi

FAILED=()
failed() { local x; for x in "${FAILED[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
ROUND=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	log "round $ROUND of $ROUNDS"
	# Direct to the backends: the baseline (no idle memory: there is no proxy).
	measure direct "$(join_addrs "${RR_PORTS[@]}")" "$(join_addrs "${BULK_PORTS[@]}")"
	for name in "${PROXIES[@]}"; do
		failed "$name" && continue
		log "$name: starting on CPU 1"
		if ! start_proxy "$name"; then
			warn "$name: skipped (it did not start); going on with the others"
			FAILED+=("$name")
			stop_proxy
			continue
		fi
		if [ "$ROUND" = 1 ]; then
			# Memory is measured once, on the freshly started proxy.
			log "$name: $IDLE_CONNS idle connections, held ${IDLE_HOLD}s"
			measure_idle "$name" || true
			sleep 1 # let the closes drain
		fi
		measure "$name" "127.0.0.1:$(front_port "$name" 0)" "127.0.0.1:$(front_port "$name" 1)"
		if ! kill -0 "$PROXY_PID" 2>/dev/null; then
			warn "$name exited during the run:"
			tail -n 8 "$TMP/$name.log" >&2 || true
		fi
		stop_proxy
	done
done
END_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
RAN=(direct)
for name in "${PROXIES[@]}"; do failed "$name" || RAN+=("$name"); done

# ---------------------------------------------------------------- report
median() { # values...: the median (the mean of the middle two for an even count)
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
val() { # name key: the median over the rounds, empty if none
	local -a vs
	read -r -a vs <<<"${R[$1.$2]:-}"
	[ ${#vs[@]} -gt 0 ] || return 0
	median "${vs[@]}"
}
all() { echo "${R[$1.$2]:-}"; }
spread() { # name key: "min-max" over the rounds
	local -a vs
	read -r -a vs <<<"${R[$1.$2]:-}"
	[ ${#vs[@]} -gt 1 ] || return 0
	printf '%s\n' "${vs[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf (hi < 1000 ? "%.1f-%.1f" : "%.0f-%.0f"), lo, hi }'
}
total() { # name key: the sum over the rounds ("no result" kept as is)
	local v="${R[$1.$2]:-}"
	case "$v" in *no*) echo "no result" ;; "") ;; *) tr ' ' '\n' <<<"$v" | awk '{ s += $1 } END { print s }' ;; esac
}
dash() { [ -n "$1" ] && echo "$1" || echo "-"; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
ratio() { # a b: a / b, two decimals, "n/a" if either is missing or b is 0
	local r
	r="$(calc 'if (b + 0 != 0) printf "%.2f", a / b' "$1" "$2")"
	echo "${r:-n/a}"
}
row() { # printf-format name key...: one table row of medians ("-" where missing)
	local fmt="$1" name="$2" k vals=()
	shift 2
	for k in "$@"; do vals+=("$(dash "$(val "$name" "$k")")"); done
	# shellcheck disable=SC2059 # the format is the caller's
	printf "$fmt" "$name" "${vals[@]}"
}

C="c$CONC"
L="c$LAT_CONC"
echo
echo "Proxy benchmark, $START_TIME, $(nproc) CPUs, $(uname -r); load $START_LOAD -> $END_LOAD;"
echo "CPU 0/1 busy before the run $IDLE_BUSY0% / $IDLE_BUSY1%."
echo "Each proxy alone on CPU 1; load generator and backends on CPU 0. Medians of $ROUNDS round(s)."
echo "Latencies in us; '+' = minus the direct run of the same round; cpu% = how busy each CPU"
echo "was; us/c, us/MB = CPU time per connection or per MB delivered: 'proxy' counts the"
echo "proxy's processes (user + system), 'cpu1' all CPU 1 did (the proxy, the softirq work"
echo "its sends cause, and anything else that ran there)."
echo
echo "cps: $CONC connections in flight, ${DURATION}s after ${WARMUP}s warm-up, $REQ_BYTES-byte request, $RESP_BYTES-byte answer"
fmt="%-8s %9s %13s %6s %6s %6s %10s %9s %9s %9s %9s\n"
# shellcheck disable=SC2059
printf "$fmt" "" "conn/s" "(range)" "errors" "cpu1%" "cpu0%" "proxy us/c" "cpu1 us/c" "p50" "p99" "+p99"
for name in "${RAN[@]}"; do
	# shellcheck disable=SC2059
	printf "$fmt" "$name" "$(dash "$(val "$name" "cps_$C")")" "$(dash "$(spread "$name" "cps_$C")")" \
		"$(dash "$(total "$name" "errors_$C")")" "$(dash "$(val "$name" "cpu1_$C")")" "$(dash "$(val "$name" "cpu0_$C")")" \
		"$(dash "$(val "$name" "proc_us_$C")")" "$(dash "$(val "$name" "cpu1_us_$C")")" \
		"$(dash "$(val "$name" "p50_$C")")" "$(dash "$(val "$name" "p99_$C")")" "$(dash "$(val "$name" "add99_$C")")"
done
echo
echo "latency: $LAT_CONC connection in flight, ${LAT_DURATION}s"
fmt="%-8s %9s %6s %9s %9s %9s %9s\n"
# shellcheck disable=SC2059
printf "$fmt" "" "conn/s" "errors" "p50" "p99" "+p50" "+p99"
for name in "${RAN[@]}"; do
	# shellcheck disable=SC2059
	printf "$fmt" "$name" "$(dash "$(val "$name" "cps_$L")")" "$(dash "$(total "$name" "errors_$L")")" \
		"$(dash "$(val "$name" "p50_$L")")" "$(dash "$(val "$name" "p99_$L")")" \
		"$(dash "$(val "$name" "add50_$L")")" "$(dash "$(val "$name" "add99_$L")")"
done
echo
echo "bulk: $BULK_STREAMS streams x $BULK_BYTES bytes, backend to client, checksummed"
fmt="%-8s %9s %13s %6s %6s %6s %11s %10s\n"
# shellcheck disable=SC2059
printf "$fmt" "" "Gbit/s" "(range)" "bad" "cpu1%" "cpu0%" "proxy us/MB" "cpu1 us/MB"
for name in "${RAN[@]}"; do
	# shellcheck disable=SC2059
	printf "$fmt" "$name" "$(dash "$(val "$name" gbit)")" "$(dash "$(spread "$name" gbit)")" \
		"$(dash "$(total "$name" bulk_bad)")" "$(dash "$(val "$name" cpu1_bulk)")" "$(dash "$(val "$name" cpu0_bulk)")" \
		"$(dash "$(val "$name" proc_us_mb)")" "$(dash "$(val "$name" cpu1_us_mb)")"
done
echo
echo "idle: $IDLE_CONNS connections held ${IDLE_HOLD}s (round 1); memory = proxy RSS delta / connections"
fmt="%-8s %9s %11s %9s %13s %13s %11s\n"
# shellcheck disable=SC2059
printf "$fmt" "" "opened" "at backends" "dropped" "RSS before kB" "RSS after kB" "B/idle conn"
for name in "${RAN[@]}"; do
	[ "$name" = direct ] && continue
	row "$fmt" "$name" idle_ready idle_backend idle_closed rss_before rss_after mem_per_conn
done
echo
echo "answers per backend in the last cps run (round robin):"
for name in "${RAN[@]}"; do
	printf "  %-8s %s\n" "$name" "$(dash "${R[$name.backends_$C]:-}")"
done
echo
echo "per round: conn/s and Gbit/s"
for name in "${RAN[@]}"; do
	printf "  %-8s %-40s %s\n" "$name" "$(all "$name" "cps_$C")" "$(all "$name" gbit)"
done

# Sanity: errors, noise on CPU 1, and whether each proxy (not the load side) was the
# limit of its cps and bulk runs.
echo
for name in "${RAN[@]}"; do
	for k in "errors_$C" "errors_$L" bulk_bad idle_closed; do
		v="$(total "$name" "$k")"
		if [ -n "$v" ] && [ "$v" != 0 ]; then warn "$name: $k = $v (raw results: --keep)"; fi
	done
	if [ "$name" = direct ]; then
		# Nothing of this benchmark runs on CPU 1 during the direct runs.
		b1="$(val direct "cpu1_$C")"
		if [ -n "$b1" ] && gt "$b1" 10; then
			warn "direct runs: CPU 1 was $b1% busy with work outside this benchmark: every figure is skewed"
		fi
		continue
	fi
	for run in "$C:cps" "bulk:bulk"; do
		b1="$(val "$name" "cpu1_${run%%:*}")"
		b0="$(val "$name" "cpu0_${run%%:*}")"
		# CPU 0 reads near 100 % in every run (the closed loop always has work); the
		# proxy was the limit when CPU 1 was saturated too.
		if [ -n "$b1" ] && gt 90 "$b1"; then
			warn "$name ${run##*:} runs: CPU 1 (the proxy) was only $b1% busy, CPU 0 (the load side) $b0%: the load side was the limit; compare the CPU time per unit instead"
		fi
	done
done
if [ ${#FAILED[@]} -gt 0 ]; then
	echo "did not run: ${FAILED[*]}"
fi

echo
echo "Ratios rvs / other (higher is better for rvs on conn/s and Gbit/s, lower on the rest):"
fmt="%-30s %12s %12s\n"
# shellcheck disable=SC2059
printf "$fmt" "" "rvs/haproxy" "rvs/nginx"
ratio_row() { # label key
	# shellcheck disable=SC2059
	printf "$fmt" "$1" "$(ratio "$(val rvs "$2")" "$(val haproxy "$2")")" "$(ratio "$(val rvs "$2")" "$(val nginx "$2")")"
}
ratio_row "conn/s @$CONC" "cps_$C"
ratio_row "proxy CPU per connection" "proc_us_$C"
ratio_row "CPU 1 per connection" "cpu1_us_$C"
ratio_row "throughput Gbit/s" gbit
ratio_row "proxy CPU per MB" proc_us_mb
ratio_row "CPU 1 per MB" cpu1_us_mb
ratio_row "added p50 latency @$LAT_CONC" "add50_$L"
ratio_row "added p99 latency @$LAT_CONC" "add99_$L"
ratio_row "p99 latency @$CONC" "p99_$C"
ratio_row "memory per idle connection" mem_per_conn
