# wrr: weighted round robin, weights 4,3,2 and a quiesced 0; the weight-3
# dest has -x 5 and overloads. Mid-scenario weight change (-e), then a new
# dest (-a), then a UDP service.
. /share/lib.sh
setup 5 80 53
ipv -A -t 10.0.0.1:80 -s wrr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 4
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 3 -x 5
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 2
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 0
ipv -A -u 10.0.0.1:53 -s wrr
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 3
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.3.2:53 -m -w 6
rules
svc -t 10.0.0.1:80
kinds 10.0.0.1 80 1 1 held closed closed held closed held closed closed held closed closed held closed held closed closed held closed
cmd -e -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
kinds 10.0.0.1 80 1 19 closed held closed closed held closed closed closed
cmd -a -t 10.0.0.1:80 -r 10.2.5.2:80 -m -w 2
kinds 10.0.0.1 80 1 27 closed held closed closed closed held closed
lnc
svc -u 10.0.0.1:53
kinds 10.0.0.1 53 2 1 udp udp udp udp udp udp udp udp udp udp udp udp
cmd -e -u 10.0.0.1:53 -r 10.2.3.2:53 -m -w 2
kinds 10.0.0.1 53 2 13 udp udp udp udp udp udp
closeall
