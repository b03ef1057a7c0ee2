# IPv6 services, NAT: wlc with held conns, sh over client addresses, and
# rr with persistence -p 30 -M 64 (per client /64) from two /64s
# (fd00:1:1::/64 and fd00:1:2::/64). lnc snapshots show how ipvsadm prints
# IPv6 entries and templates.
. /share/lib.sh
SERVE_EXTRA=fd00:2:%n::2
setup 3 80 81 82
ipv6
ipv -A -t [fd00::1]:80 -s wlc
ipv -a -t [fd00::1]:80 -r [fd00:2:1::2]:80 -m -w 1
ipv -a -t [fd00::1]:80 -r [fd00:2:2::2]:80 -m -w 2
ipv -a -t [fd00::1]:80 -r [fd00:2:3::2]:80 -m -w 1
ipv -A -t [fd00::2]:81 -s sh
ipv -a -t [fd00::2]:81 -r [fd00:2:1::2]:81 -m -w 1
ipv -a -t [fd00::2]:81 -r [fd00:2:2::2]:81 -m -w 1
ipv -a -t [fd00::2]:81 -r [fd00:2:3::2]:81 -m -w 1
ipv -A -t [fd00::3]:82 -s rr -p 30 -M 64
ipv -a -t [fd00::3]:82 -r [fd00:2:1::2]:82 -m -w 1
ipv -a -t [fd00::3]:82 -r [fd00:2:2::2]:82 -m -w 1
ipv -a -t [fd00::3]:82 -r [fd00:2:3::2]:82 -m -w 1
rules
svc -t [fd00::1]:80
for c in 1 2 3 4 5; do conn held fd00:1:1::$c $((40000 + c)) fd00::1 80; done
conn closed fd00:1:1::6 40006 fd00::1 80
lnc
hclose [fd00:1:1::2]:40002
svc -t [fd00::2]:81
for c in 1:1::7 1:1::8 1:1::9 1:2::7 1:1::7 1:2::8 1:2::9 1:1::8; do conn closed fd00:$c 0 fd00::2 81; done
svc -t [fd00::3]:82
for c in 1:1::10 1:2::10 1:1::11 1:2::11 1:1::12 1:2::12 1:1::10 1:2::13; do conn closed fd00:$c 0 fd00::3 82; done
lnc
closeall
