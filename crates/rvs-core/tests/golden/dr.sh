# Direct routing (-g) and tunnelling (-i): the real servers have the VIPs on
# their loopback (arp_ignore=1, arp_announce=2) and answer the client over a
# second link, so the director sees only the client's packets and IPVS uses
# its INPUT-ONLY state table. lnc snapshots of held conns (ESTABLISHED),
# after the client closes (FIN_WAIT), of closed conns; counts; UDP over DR;
# a tunnelled (ipip) service with wlc.
. /share/lib.sh
SERVE_EXTRA=10.0.0.1,10.0.0.2
setup 3 80 53 81
direct 10.0.0.1 10.0.0.2
ipv -A -t 10.0.0.1:80 -s rr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -g -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -g -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -g -w 1
ipv -A -u 10.0.0.1:53 -s rr
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -g -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -g -w 1
ipv -A -t 10.0.0.2:81 -s wlc
ipv -a -t 10.0.0.2:81 -r 10.2.1.2:81 -i -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.2.2:81 -i -w 2
rules
svc -t 10.0.0.1:80
conn held 10.1.1.1 40001 10.0.0.1 80
lnc
conn held 10.1.1.2 40002 10.0.0.1 80
conn closed 10.1.1.3 40003 10.0.0.1 80
lnc
hclose 10.1.1.1:40001
lnc
conn held 10.1.1.4 40004 10.0.0.1 80
conn closed 10.1.1.5 40005 10.0.0.1 80
hclose 10.1.1.2:40002
lnc
svc -u 10.0.0.1:53
conn udp 10.1.1.6 40006 10.0.0.1 53
conn udp 10.1.1.7 40007 10.0.0.1 53
conn udp 10.1.1.6 40006 10.0.0.1 53
lnc
svc -t 10.0.0.2:81
conn held 10.1.1.8 40008 10.0.0.2 81
conn held 10.1.1.9 40009 10.0.0.2 81
conn closed 10.1.1.10 40010 10.0.0.2 81
conn held 10.1.1.11 40011 10.0.0.2 81
lnc
hclose 10.1.1.8:40008
lnc
conn held 10.1.1.12 40012 10.0.0.2 81
lnc
closeall
