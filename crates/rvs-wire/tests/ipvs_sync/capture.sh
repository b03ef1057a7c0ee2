# capture.sh: runs inside the IPVS oracle guest (busybox ash, Debian's 6.1 kernel):
#   bash ../shared/tools/ipvs-oracle/run.sh crates/rvs-wire/tests/ipvs_sync/capture.sh
# A real IPVS sync master (syncid 42) in the guest's root netns multicasts connection
# state to 224.0.0.81:8848 out of veth "vsy"; netns "cap" on the other end records each
# datagram as one hex line with synccap (tests/ipvs_sync/synccap.c, built static by the
# host: busybox nc has no UDP) and runs a real sync backup, whose connection table shows
# what the kernel itself decoded. The guest has no bridge module, hence one netns for both.
#   gcc -static -O2 -o /tmp/synccap crates/rvs-wire/tests/ipvs_sync/synccap.c
#   bash ../shared/tools/ipvs-oracle/run.sh crates/rvs-wire/tests/ipvs_sync/capture.sh /tmp/synccap
#
# Topology:
#   client netns "cl"  eth0 10.0.1.2/24, default via 10.0.1.1
#   director (root)    vcl 10.0.1.1/24, VIP 10.0.1.100/32 on dummy vip0,
#                      vrs 10.0.2.1/24, vsy 10.0.3.1/24 (sync interface)
#   real server "rs"   eth0 10.0.2.2/24, default via 10.0.2.1, VIP on lo (for DR)
#   capture "cap"      eth0 10.0.3.2/24
# Services (all on 10.0.1.100, real server 10.0.2.2):
#   TCP :80  NAT -> :8080        TCP :8000 NAT persistent (-p 60) -> :8000
#   UDP :53  NAT -> :5353        TCP :81   DR -> :81
# Phase 1 sends sync version 1 (the default), phase 2 version 0 (sysctl sync_version=0).
IP=/usr/sbin/ip
echo 1 > /proc/sys/net/ipv4/ip_forward
for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
echo 1 > /proc/sys/net/ipv4/conf/all/accept_local
$IP link add vip0 type dummy; $IP link set vip0 up; $IP addr add 10.0.1.100/32 dev vip0
$IP netns add cl; $IP netns add rs; $IP netns add cap
$IP link add vcl type veth peer name eth0 netns cl
$IP addr add 10.0.1.1/24 dev vcl; $IP link set vcl up
$IP -n cl addr add 10.0.1.2/24 dev eth0; $IP -n cl link set eth0 up; $IP -n cl link set lo up
$IP -n cl route add default via 10.0.1.1
$IP link add vrs type veth peer name eth0 netns rs
$IP addr add 10.0.2.1/24 dev vrs; $IP link set vrs up
echo 1 > /proc/sys/net/ipv4/conf/vrs/accept_local
$IP -n rs addr add 10.0.2.2/24 dev eth0; $IP -n rs link set eth0 up; $IP -n rs link set lo up
$IP -n rs addr add 10.0.1.100/32 dev lo
$IP -n rs route add default via 10.0.2.1
$IP link add vsy type veth peer name eth0 netns cap
$IP addr add 10.0.3.1/24 dev vsy; $IP link set vsy up
$IP -n cap addr add 10.0.3.2/24 dev eth0; $IP -n cap link set eth0 up; $IP -n cap link set lo up
sleep 2
# servers in rs: HTTP on 8080, 8000 and 81 (busybox httpd), UDP echo-ish sink on 5353
mkdir -p /tmp/www; echo hello > /tmp/www/index.html
for p in 8080 8000 81; do $IP netns exec rs httpd -p $p -h /tmp/www; done
ipvsadm -A -t 10.0.1.100:80 -s rr; ipvsadm -a -t 10.0.1.100:80 -r 10.0.2.2:8080 -m
ipvsadm -A -t 10.0.1.100:8000 -s rr -p 60; ipvsadm -a -t 10.0.1.100:8000 -r 10.0.2.2:8000 -m
ipvsadm -A -u 10.0.1.100:53 -s rr; ipvsadm -a -u 10.0.1.100:53 -r 10.0.2.2:5353 -m
ipvsadm -A -t 10.0.1.100:81 -s rr; ipvsadm -a -t 10.0.1.100:81 -r 10.0.2.2:81 -g
$IP netns exec cap ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 42
ipvsadm --start-daemon master --mcast-interface vsy --syncid 42
ipvsadm -Ln --daemon
$IP netns exec cap /share/synccap listen 8848 224.0.0.81 10.0.3.2 25 > /tmp/sync1.hex &
CAP=$!
sleep 1

traffic() { # $1: tag for the client's UDP source port
	$IP netns exec cl wget -q -O - http://10.0.1.100:80/ | sed 's/^/# nat80: /'
	$IP netns exec cl wget -q -O - http://10.0.1.100:8000/ | sed 's/^/# persist8000: /'
	$IP netns exec cl timeout 5 wget -q -O - http://10.0.1.100:81/ | sed 's/^/# dr81: /'
	$IP netns exec cl /share/synccap send $1 10.0.1.100 53 5
}
traffic 40001
sleep 5
echo "# director connections after phase 1 (v1):"
ipvsadm -Lnc | sed 's/^/# /'
wait $CAP
echo "=== capture v1"
cat /tmp/sync1.hex
echo "=== end"

echo 0 > /proc/sys/net/ipv4/vs/sync_version
$IP netns exec cap /share/synccap listen 8848 224.0.0.81 10.0.3.2 25 > /tmp/sync0.hex &
CAP=$!
sleep 1
# fresh client ports (TIME_WAIT entries of phase 1 stay), wget picks new ports itself
traffic 40002
sleep 5
echo "# director connections after phase 2 (v0):"
ipvsadm -Lnc | sed 's/^/# /'
wait $CAP
echo "=== capture v0"
cat /tmp/sync0.hex
echo "=== end"
echo "# backup's connection table (decoded by the kernel):"
$IP netns exec cap ipvsadm -Lnc | sed 's/^/# /'
