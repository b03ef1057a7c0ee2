# ovf: weighted overflow (highest weight among dests with activeconns <=
# weight, not overloaded, weight > 0). Held conns fill the dests up; the
# weight-2 dest also has -x 2; when all are full the SYN is refused; closing
# held conns frees capacity again. Then a UDP service (active stays 0).
. /share/lib.sh
setup 4 80 53
ipv -A -t 10.0.0.1:80 -s ovf
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 3
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 2 -x 2
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 0
ipv -A -u 10.0.0.1:53 -s ovf
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 2
rules
svc -t 10.0.0.1:80
kinds 10.0.0.1 80 1 1 closed held held held held held held held held held held
set -- $HELD; hclose ${1%=*}; hclose ${2%=*}
kinds 10.0.0.1 80 1 12 held held held closed
set -- $HELD; hclose ${5%=*}; hclose ${6%=*}
kinds 10.0.0.1 80 1 16 held held held
lnc
svc -u 10.0.0.1:53
kinds 10.0.0.1 53 2 1 udp udp udp udp udp
closeall
