# Connection states and expiry: lnc snapshots (with uptime stamps) for a held
# TCP conn, after it is closed, a closed TCP conn, a UDP conn and a
# persistence template (ASSURED, and NONE when the real server refuses);
# then ipvsadm --set 10 5 7 and new conns, watched
# until they expire.
. /share/lib.sh
setup 2 80 53 81
ipv -A -t 10.0.0.1:80 -s rr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -A -u 10.0.0.1:53 -s rr
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 1
ipv -A -t 10.0.0.2:81 -s rr -p 20
ipv -a -t 10.0.0.2:81 -r 10.2.1.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.2.2:81 -m -w 1
ipv -A -t 10.0.0.3:84 -s rr -p 20
ipv -a -t 10.0.0.3:84 -r 10.2.1.2:99 -m -w 1
rules
echo "# $(ipvsadm -L --timeout)"
svc -t 10.0.0.1:80
conn held 10.1.1.1 40001 10.0.0.1 80
lnc
conn closed 10.1.1.2 40002 10.0.0.1 80
lnc
hclose 10.1.1.1:40001
lnc
svc -u 10.0.0.1:53
conn udp 10.1.1.3 40003 10.0.0.1 53
lnc
svc -t 10.0.0.2:81
conn held 10.1.1.4 40004 10.0.0.2 81
lnc
hclose 10.1.1.4:40004
lnc
cmd --set 10 5 7
echo "# $(ipvsadm -L --timeout)"
svc -t 10.0.0.1:80
conn held 10.1.1.5 40005 10.0.0.1 80
conn closed 10.1.1.6 40006 10.0.0.1 80
svc -u 10.0.0.1:53
conn udp 10.1.1.7 40007 10.0.0.1 53
svc -t 10.0.0.2:81
conn held 10.1.1.8 40008 10.0.0.2 81
lnc
pause 4
lnc
svc -t 10.0.0.1:80
counts
pause 4
lnc
counts
pause 4
lnc
counts
# the held conn's IPVS entry has expired (10 s idle); close it now
hclose 10.1.1.5:40005
lnc
svc -t 10.0.0.2:81
hclose 10.1.1.8:40008
lnc
pause 6
lnc
# a persistent service whose dest has no listener on port 99: the real server
# answers the SYN with RST; the template never becomes ASSURED
svc -t 10.0.0.3:84
conn closed 10.1.1.9 40009 10.0.0.3 84
lnc
closeall
