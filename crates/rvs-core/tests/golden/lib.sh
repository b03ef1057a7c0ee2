# lib.sh: shared helpers for the golden scenario scripts. Sourced inside the
# IPVS oracle guest (busybox ash) by every NAME.sh; regen.sh copies it, and the
# static lvsprobe binary, into the guest's /share next to the script.
#
# Topology (all IPv4):
#   client netns "cl"   eth0: 10.1.1.1-60/24, 10.1.2.1-60/24, 10.1.3.1-60/24
#                       default via 10.1.1.254
#   director (guest root netns, IPVS): vcl: 10.1.1.254/24 10.1.2.254/24 10.1.3.254/24
#                       vip0 (dummy): VIPs 10.0.0.1-16/32, and for fwmark
#                       services 10.0.1.1-40/32 (mark 1) and 10.0.2.1-40/32
#                       (mark 2), marked by "fwmarks" below
#                       vrN: 10.2.N.1/24 to real server N
#   real server netns "rsN" (N=1..NRS) eth0: 10.2.N.2/24, default via 10.2.N.1,
#                       running "lvsprobe serve 10.2.N.2 PORTS..." (TCP and UDP).
# Every line printed to stdout is either an event line (see README.md) or
# starts with "#".

P=/share/lvsprobe
IP=/usr/sbin/ip
HELD=""

# now: uptime in centiseconds (/proc/uptime always has two decimals)
now() { read -r _u _rest < /proc/uptime; _c=${_u%.*}${_u#*.}; echo $((_c + 0)); }

# setup NRS PORT...: build the topology, start servers on PORTs in every RS
setup() {
	_nrs=$1; shift
	echo 1 > /proc/sys/net/ipv4/ip_forward
	for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
	$IP link add vip0 type dummy && $IP link set vip0 up
	_b=/tmp/vip.batch; : > $_b
	for i in $(seq 1 16); do echo "addr add 10.0.0.$i/32 dev vip0" >> $_b; done
	for i in $(seq 1 40); do echo "addr add 10.0.1.$i/32 dev vip0" >> $_b; done
	for i in $(seq 1 40); do echo "addr add 10.0.2.$i/32 dev vip0" >> $_b; done
	$IP -batch $_b
	$IP netns add cl
	$IP link add vcl type veth peer name eth0 netns cl
	$IP addr add 10.1.1.254/24 dev vcl
	$IP addr add 10.1.2.254/24 dev vcl
	$IP addr add 10.1.3.254/24 dev vcl
	$IP link set vcl up
	_b=/tmp/cl.batch; : > $_b
	for n in 1 2 3; do for i in $(seq 1 60); do echo "addr add 10.1.$n.$i/24 dev eth0" >> $_b; done; done
	echo "link set eth0 up" >> $_b
	echo "link set lo up" >> $_b
	$IP -n cl -batch $_b
	$IP -n cl route add default via 10.1.1.254
	for n in $(seq 1 "$_nrs"); do
		$IP netns add rs$n
		$IP link add vr$n type veth peer name eth0 netns rs$n
		$IP addr add 10.2.$n.1/24 dev vr$n
		$IP link set vr$n up
		$IP -n rs$n addr add 10.2.$n.2/24 dev eth0
		$IP -n rs$n link set eth0 up
		$IP -n rs$n link set lo up
		$IP -n rs$n route add default via 10.2.$n.1
		$IP netns exec rs$n $P serve 10.2.$n.2 "$@" &
	done
	sleep 1
}

# fwmarks: mark packets arriving from the client by destination, with tc
# (the guest has neither iptables nor nft; regen.sh copies the host's tc and
# the two libraries the guest lacks): dst 10.0.1.0/24 -> mark 1,
# dst 10.0.2.0/24 -> mark 2.
fwmarks() {
	for m in sch_ingress cls_u32 act_skbedit; do modprobe $m; done
	_tc="env LD_LIBRARY_PATH=/share /share/tc"
	$_tc qdisc add dev vcl ingress
	$_tc filter add dev vcl ingress protocol ip prio 1 u32 match ip dst 10.0.1.0/24 action skbedit mark 1
	$_tc filter add dev vcl ingress protocol ip prio 2 u32 match ip dst 10.0.2.0/24 action skbedit mark 2
}

# ipv ARGS...: a set-up command (before the first rules block)
ipv() {
	echo "setup $*"
	ipvsadm "$@" 2>&1 | sed 's/^/# ipvsadm said: /'
}

# rules: "rule" lines = ipvsadm -Sn verbatim (ipvsadm sorts services and
# dests by address and omits thresholds), then "dest" lines = every dest in
# the kernel's list order (ipvsadm -Ln --nosort), with weight and thresholds.
rules() {
	ipvsadm -Sn | while IFS= read -r _l; do echo "rule $_l"; done
	ipvsadm -Ln --nosort > /tmp/ln.out
	ipvsadm -Ln --nosort --thresholds > /tmp/lnt.out
	awk 'NR == FNR { a[FNR] = $0; next }
	     FNR <= 3 { next }
	     $1 != "->" { svc = ($1 == "FWM" ? "FWM/" $2 : $1 "/" $2); next }
	     { split(a[FNR], x, " "); print "dest " svc " " $2 " " x[3] " " x[4] " " $3 " " $4 }' /tmp/ln.out /tmp/lnt.out
}

# cmd ARGS...: a mid-scenario change, then the new rules
cmd() {
	echo "cmd $*"
	ipvsadm "$@" 2>&1 | sed 's/^/# ipvsadm said: /'
	rules
}

# svc -t|-u|-f ADDR: the service whose counts follow each conn
svc() { SVC="$*"; }

# counts: ActiveConn/InActConn of every dest of $SVC, kernel order
counts() {
	_t=$(now)
	ipvsadm -Ln --nosort $SVC | awk -v t="$_t" '$1 == "->" && $2 != "RemoteAddress:Port" { print "t=" t " counts " $2 " " $5 " " $6 }'
}

# lnc: a connection-table snapshot bracketed by lnc-begin/lnc-end
lnc() {
	_t0=$(now)
	ipvsadm -Lnc > /tmp/lnc.out
	_t1=$(now)
	echo "t=$_t0 lnc-begin"
	tail -n +3 /tmp/lnc.out | while IFS= read -r _l; do echo "t=$_t0 lnc $_l"; done
	echo "t=$_t1 lnc-end"
}

# conn KIND SADDR SPORT VIP VPORT [nocounts]
#   KIND: udp | held | closed. Prints the conn line, checks it against the
#   kernel's connection table, then prints counts for $SVC.
conn() {
	_k=$1 _sa=$2 _sp=$3 _va=$4 _vp=$5 _nc=$6
	_t=$(now)
	if [ "$_k" = udp ]; then
		_proto=udp
		_out=$($IP netns exec cl $P udp "$_sa" "$_sp" "$_va" "$_vp")
	else
		_proto=tcp
		_out=$($IP netns exec cl $P tcp "$_sa" "$_sp" "$_va" "$_vp" "$_k")
	fi
	set -- $_out
	_ca=$1 _rs=$2 _x=$3
	_lrs=$(ipvsadm -Lnc | awk -v c="$_ca" -v v="$_va:$_vp" '$4 == c && $5 == v { print $6 }')
	if [ "$_rs" = none ] && [ -n "$_lrs" ]; then
		# IPVS did schedule it, but the real server refused (RST)
		echo "# $_x from the real server; the dest is taken from ipvsadm -Lnc"
		_rs=$_lrs
	fi
	echo "t=$_t conn $_k $_proto $_ca $_va:$_vp -> $_rs"
	if [ "$_rs" = none ]; then
		echo "# conn failed: $_x"
	else
		[ "$_k" = held ] && HELD="$HELD $_ca=$_x"
		[ "$_lrs" = "$_rs" ] || echo "# MISMATCH: ipvsadm -Lnc gives '$_lrs' for $_ca -> $_va:$_vp, reply came from $_rs"
	fi
	[ "$_nc" = nocounts ] || counts
}

# hclose CADDR:CPORT: end a held connection (its client process is killed, so
# the client sends FIN; the server then closes too), wait 1 s, print counts
# for $SVC
hclose() {
	_t=$(now)
	for _h in $HELD; do
		if [ "${_h%=*}" = "$1" ]; then kill "${_h#*=}"; fi
	done
	echo "t=$_t close $1"
	sleep 1
	counts
}

# closeall: end every held connection (no events; used at the end)
closeall() { for _h in $HELD; do kill "${_h#*=}" 2>/dev/null; done; HELD=""; }

# vsctl NAME VALUE: set /proc/sys/net/ipv4/vs/NAME, recorded as an event
vsctl() {
	echo "sysctl $1 $2"
	echo "$2" > "/proc/sys/net/ipv4/vs/$1"
}

# pause SECONDS: sleep, recorded as an event
pause() {
	echo "t=$(now) sleep $1"
	sleep "$1"
}

# burst KIND NET FIRST LAST VIP VPORT: one conn from each of 10.1.NET.FIRST..LAST
# (ephemeral source port)
burst() {
	for _i in $(seq "$3" "$4"); do conn "$1" "10.1.$2.$_i" 0 "$5" "$6"; done
}

# kinds VIP VPORT NET FIRST KIND...: conns of the given kinds, from
# 10.1.NET.FIRST upwards (one client address per conn, ephemeral port)
kinds() {
	_kv=$1 _kp=$2 _kn=$3 _ki=$4; shift 4
	for _kk in "$@"; do conn "$_kk" "10.1.$_kn.$_ki" 0 "$_kv" "$_kp"; _ki=$((_ki + 1)); done
}
