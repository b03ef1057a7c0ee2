# sed: weights 3,2,1 and a quiesced 0; the weight-2 dest has -x 4 and
# overloads. Mostly held TCP conns (active counts matter), some closed ones
# (inactive), two held conns closed mid-way; then a UDP service (inactive only).
. /share/lib.sh
setup 4 80 53
ipv -A -t 10.0.0.1:80 -s sed
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 3
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 2 -x 4
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 0
ipv -A -u 10.0.0.1:53 -s sed
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 3
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 2
ipv -a -u 10.0.0.1:53 -r 10.2.3.2:53 -m -w 1
rules
svc -t 10.0.0.1:80
kinds 10.0.0.1 80 1 1 held held closed held held closed held held held closed
set -- $HELD; hclose ${1%=*}; hclose ${4%=*}
kinds 10.0.0.1 80 1 11 held closed held held held closed held held held held closed held
lnc
svc -u 10.0.0.1:53
kinds 10.0.0.1 53 2 1 udp udp udp udp udp udp udp udp udp udp
closeall
