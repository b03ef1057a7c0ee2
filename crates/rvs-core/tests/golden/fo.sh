# fo: weighted failover (highest weight among available dests). Two dests
# tie at weight 5; the one with -x 3 overloads; then weight edits move the
# traffic; editing the threshold away (-x 0) clears the overload.
. /share/lib.sh
setup 4 80 53
ipv -A -t 10.0.0.1:80 -s fo
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 2
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 5
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 5 -x 3
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 0
ipv -A -u 10.0.0.1:53 -s fo
ipv -a -u 10.0.0.1:53 -r 10.2.1.2:53 -m -w 1
ipv -a -u 10.0.0.1:53 -r 10.2.2.2:53 -m -w 2 -x 2
ipv -a -u 10.0.0.1:53 -r 10.2.3.2:53 -m -w 0
rules
svc -t 10.0.0.1:80
kinds 10.0.0.1 80 1 1 held closed held closed held closed held
cmd -e -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
kinds 10.0.0.1 80 1 8 closed held closed held
cmd -e -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 5 -x 0
kinds 10.0.0.1 80 1 12 held closed held
cmd -e -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 9
kinds 10.0.0.1 80 1 15 closed held closed
lnc
svc -u 10.0.0.1:53
kinds 10.0.0.1 53 2 1 udp udp udp udp udp udp
closeall
