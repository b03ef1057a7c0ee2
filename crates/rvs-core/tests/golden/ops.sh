# One-packet scheduling (-o), over direct routing (replies go from the real
# server straight to the client; see the end for why not NAT). rr: datagrams
# from one client address:port spread over the servers, no conn entries,
# counts stay 0. -o with -p 30: a template is made and datagrams stick to
# it. ipvsadm refuses -o for a TCP service.
. /share/lib.sh
SERVE_EXTRA=10.0.0.1,10.0.0.2
setup 3 53 54
direct 10.0.0.1 10.0.0.2
ipv -A -u 10.0.0.1:53 -s rr -o
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -g -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -g -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.3.2:53 -g -w 1
ipv -A -u 10.0.0.2:54 -s rr -o -p 30
ipv -a -u 10.0.0.2:54 -r 10.2.1.2:54 -g -w 1
ipv -a -u 10.0.0.2:54 -r 10.2.2.2:54 -g -w 1
ipv -a -u 10.0.0.2:54 -r 10.2.3.2:54 -g -w 1
ipv -A -t 10.0.0.1:80 -s rr -o
rules
# one-packet scheduling keeps no conn entry, so the answering server cannot
# be cross-checked against ipvsadm -Lnc for these datagrams
OPS=1
svc -u 10.0.0.1:53
for i in 1 2 3 4 5; do conn udp 10.1.1.1 40001 10.0.0.1 53; done
conn udp 10.1.1.2 40002 10.0.0.1 53
conn udp 10.1.1.1 40001 10.0.0.1 53
lnc
stats
svc -u 10.0.0.2:54
for c in 1:40001 1:40001 2:40002 1:40001 3:40003 2:40002 1:40001; do
	conn udp 10.1.1.${c%:*} ${c#*:} 10.0.0.2 54
done
lnc
stats
OPS=0
# Not an event: one-packet scheduling with NAT. The reply leaves the real
# server from 10.2.1.2:55; with no conn entry the director cannot translate
# it back, so it reaches the client from the real server's own address, and
# the client's socket (connected to the VIP) does not accept it.
ipvsadm -A -u 10.0.0.3:55 -s rr -o
ipvsadm -a -u 10.0.0.3:55 -r 10.2.1.2:53 -m -w 1
echo "# ipvsadm -A -u 10.0.0.3:55 -s rr -o; ipvsadm -a -u 10.0.0.3:55 -r 10.2.1.2:53 -m -w 1"
echo "# lvsprobe udp 10.1.1.6 40006 10.0.0.3 55: $($IP netns exec cl $P udp 10.1.1.6 40006 10.0.0.3 55)"
sleep 3
echo "# ipvsadm -Ln --stats --exact -u 10.0.0.3:55 (3 s later):"
ipvsadm -Ln --stats --exact -u 10.0.0.3:55 | sed 's/^/#   /'
