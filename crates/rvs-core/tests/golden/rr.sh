# rr: round robin. TCP service with a quiesced dest (w0) and one with an
# upper threshold (-x 3) that overloads; mid-scenario un-quiesce and a new
# dest; then a UDP service.
. /share/lib.sh
setup 5 80 53
ipv -A -t 10.0.0.1:80 -s rr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 2 -x 3
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 0
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 1
ipv -A -u 10.0.0.1:53 -s rr
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 0
ipv -a -u 10.0.0.1:53 -r 10.2.3.2:53 -m -w 5
ipv -a -u 10.0.0.1:53 -r 10.2.4.2:53 -m -w 1
rules
svc -t 10.0.0.1:80
kinds 10.0.0.1 80 1 1 held closed held closed closed held held closed closed held closed held
cmd -e -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
kinds 10.0.0.1 80 1 13 closed held closed closed held closed
cmd -a -t 10.0.0.1:80 -r 10.2.5.2:80 -m -w 1
kinds 10.0.0.1 80 1 19 held closed closed held closed closed
lnc
svc -u 10.0.0.1:53
kinds 10.0.0.1 53 2 1 udp udp udp udp udp udp udp udp
cmd -d -u 10.0.0.1:53 -r 10.2.3.2:53
kinds 10.0.0.1 53 2 9 udp udp udp udp
lnc
closeall
