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
# Optional additions (called after setup): "direct" (a second path from each
# real server straight to the client, VIPs on the real servers' loopback,
# ipip, for -g and -i) and "ipv6" (IPv6 on the same links).
# Every line printed to stdout is either an event line (see README.md) or
# starts with "#".

P=/share/lvsprobe
IP=/usr/sbin/ip
HELD=""

# now: uptime in centiseconds (/proc/uptime always has two decimals)
now() { read -r _u _rest < /proc/uptime; _c=${_u%.*}${_u#*.}; echo $((_c + 0)); }

# setup NRS PORT...: build the topology, start servers on PORTs in every RS.
# If SERVE_EXTRA is set (a comma list; "%n" stands for the server's number),
# every server also listens on those addresses, answering with its identity
# 10.2.N.2:PORT (or, for IPv6, its first IPv6 address): VIPs for direct
# routing, fd00:2:%n::2 for IPv6.
setup() {
	_nrs=$1; shift
	NRS=$_nrs
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
		_sa=10.2.$n.2
		[ -n "$SERVE_EXTRA" ] && _sa="$_sa,$(echo "$SERVE_EXTRA" | sed "s/%n/$n/g")"
		$IP netns exec rs$n $P serve "$_sa" "$@" &
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

# direct VIP...: direct routing (-g) and tunnelling (-i). Every real server N
# gets a second link straight to the client netns (rsN "dc" 10.3.N.2/24 <->
# cl "vdN" 10.3.N.1/24) and a route for the client nets over it, so its
# replies bypass the director; the VIPs go on its loopback, with
# arp_ignore=1 and arp_announce=2; ipip is loaded and tunl0 is up (it
# decapsulates -i traffic). rp_filter is 0 everywhere. The servers must
# listen on the VIPs: run setup with SERVE_EXTRA=VIP,VIP...
direct() {
	modprobe ipip
	for n in $(seq 1 "$NRS"); do
		$IP -n cl link add vd$n type veth peer name dc netns rs$n
		$IP -n cl addr add 10.3.$n.1/24 dev vd$n
		$IP -n cl link set vd$n up
		$IP -n rs$n addr add 10.3.$n.2/24 dev dc
		$IP -n rs$n link set dc up
		$IP -n rs$n route add 10.1.0.0/16 via 10.3.$n.1
		for _v in "$@"; do $IP -n rs$n addr add "$_v/32" dev lo; done
		$IP -n rs$n link set tunl0 up
		$IP netns exec rs$n sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore
			echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce
			for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done'
	done
	$IP netns exec cl sh -c 'for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done'
	sleep 1
}

# ipv6: IPv6 on the same links (all addresses "nodad"):
#   cl eth0 fd00:1:1::1-20/64 and fd00:1:2::1-20/64, default via fd00:1:1::fe
#   director vcl fd00:1:1::fe/64 fd00:1:2::fe/64; vip0 fd00::1-4/128;
#            vrN fd00:2:N::1/64; forwarding on
#   rsN eth0 fd00:2:N::2/64, default via fd00:2:N::1
# The servers listen on IPv6 when setup ran with SERVE_EXTRA=fd00:2:%n::2.
ipv6() {
	echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
	for i in 1 2 3 4; do $IP addr add fd00::$i/128 dev vip0 nodad; done
	$IP addr add fd00:1:1::fe/64 dev vcl nodad
	$IP addr add fd00:1:2::fe/64 dev vcl nodad
	_b=/tmp/cl6.batch; : > $_b
	for n in 1 2; do for i in $(seq 1 20); do echo "addr add fd00:1:$n::$i/64 dev eth0 nodad" >> $_b; done; done
	$IP -n cl -batch $_b
	$IP -n cl -6 route add default via fd00:1:1::fe
	for n in $(seq 1 "$NRS"); do
		$IP addr add fd00:2:$n::1/64 dev vr$n nodad
		$IP -n rs$n addr add fd00:2:$n::2/64 dev eth0 nodad
		$IP -n rs$n -6 route add default via fd00:2:$n::1
	done
	sleep 1
}

# rstdrop on|off: while on, tc drops every TCP RST the client netns sends
# (egress of cl's eth0), so the director never sees it. Recorded as the
# comment "# rstdrop on|off".
RSTDROP=""
rstdrop() {
	_tc="env LD_LIBRARY_PATH=/share /share/tc"
	if [ "$1" = on ]; then
		for m in sch_ingress cls_u32 act_gact; do modprobe $m; done
		$IP netns exec cl $_tc qdisc add dev eth0 clsact
		# IPv4 without options (IHL 5), protocol TCP, RST bit (byte 20+13)
		$IP netns exec cl $_tc filter add dev eth0 egress protocol ip prio 1 u32 \
			match u8 0x05 0x0f at 0 match ip protocol 6 0xff match u8 0x04 0x04 at 33 action drop
		RSTDROP=" unseen"
	else
		$IP netns exec cl $_tc qdisc del dev eth0 clsact
		RSTDROP=""
	fi
	echo "# rstdrop $1"
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

# stats: the Conns counter of every dest of $SVC, kernel order, from
# ipvsadm -Ln --stats --exact. The 6.1 kernel adds its per-CPU counters into
# the totals that ipvsadm reads only in its estimation timer (every 2 s), so
# this waits 3 s first; the stamp is the time of reading.
stats() {
	sleep 3
	_t=$(now)
	ipvsadm -Ln --nosort --stats --exact $SVC | awk -v t="$_t" '$1 == "->" && $2 != "RemoteAddress:Port" { print "t=" t " stats " $2 " " $3 }'
}

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
#   With OPS=1 (one-packet scheduling: the kernel keeps no conn entry) an
#   empty -Lnc lookup is not a mismatch.
conn() {
	_k=$1 _sa=$2 _sp=$3 _va=$4 _vp=$5 _nc=$6
	case $_va in *:*) _vv="[$_va]:$_vp" ;; *) _vv="$_va:$_vp" ;; esac
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
	_lrs=$(ipvsadm -Lnc | awk -v c="$_ca" -v v="$_vv" '$4 == c && $5 == v { print $6 }')
	_failed=""
	if [ "$_rs" = none ] && [ -n "$_lrs" ]; then
		if [ "$_x" = ECONNREFUSED ]; then
			# IPVS did schedule it, but the real server refused (RST)
			echo "# $_x from the real server; the dest is taken from ipvsadm -Lnc"
		else
			echo "# $_x: IPVS forwarded it, but it did not complete; the dest is taken from ipvsadm -Lnc"
		fi
		_rs=$_lrs _failed=1
	fi
	echo "t=$_t conn $_k $_proto $_ca $_vv -> $_rs"
	if [ "$_rs" = none ]; then
		echo "# conn failed: $_x"
	else
		[ "$_k" = held ] && [ -z "$_failed" ] && HELD="$HELD $_ca=$_x"
		if [ "$OPS" = 1 ] && [ -z "$_lrs" ]; then :
		elif [ "$_lrs" != "$_rs" ]; then
			echo "# MISMATCH: ipvsadm -Lnc gives '$_lrs' for $_ca -> $_vv, reply came from $_rs"
		fi
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

# heldpid CADDR:CPORT: the pid of the process holding that conn
heldpid() { for _h in $HELD; do [ "${_h%=*}" = "$1" ] && echo "${_h#*=}"; done; }

# hsend CADDR:CPORT: send one line of data on a held conn and wait up to 3 s
# for the server's answer; prints "send CADDR:CPORT -> RSADDR:RSPORT", or
# "-> none" and a "# send failed: ERR" comment
hsend() {
	_t=$(now)
	_pid=$(heldpid "$1")
	rm -f /tmp/lvsprobe.$_pid
	kill -USR1 "$_pid"
	_i=0
	while [ ! -s /tmp/lvsprobe.$_pid ] && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
	_r=none _e=NOANSWER
	[ -s /tmp/lvsprobe.$_pid ] && read -r _r _e < /tmp/lvsprobe.$_pid
	echo "t=$_t send $1 -> $_r"
	[ "$_r" = none ] && echo "# send failed: $_e"
}

# habort CADDR:CPORT: abort a held conn: the client sends RST instead of FIN
# ("abort CADDR:CPORT"; "abort CADDR:CPORT unseen" while rstdrop is on, the
# RST never reaching the director); wait 1 s, print counts for $SVC
habort() {
	_t=$(now)
	_pid=$(heldpid "$1")
	kill -USR2 "$_pid"
	_nh=""
	for _h in $HELD; do [ "${_h%=*}" = "$1" ] || _nh="$_nh $_h"; done
	HELD=$_nh
	echo "t=$_t abort $1$RSTDROP"
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
