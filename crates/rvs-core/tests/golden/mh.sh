# mh: Maglev hashing (on the source address; -b mh-port adds the source
# port). Weights 1,2,3,1 over 40 client addresses; mh-port with chosen
# source ports; a quiesced (-e -w 0 after add) and an overloaded (-x 3)
# dest without and with -b mh-fallback.
. /share/lib.sh
setup 4 80 81 82 83
ipv -A -t 10.0.0.1:80 -s mh
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 2
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 3
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 1
ipv -A -t 10.0.0.2:81 -s mh -b mh-port
ipv -a -t 10.0.0.2:81 -r 10.2.1.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.2.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.3.2:81 -m -w 1
ipv -A -t 10.0.0.3:82 -s mh
ipv -a -t 10.0.0.3:82 -r 10.2.1.2:82 -m -w 1
ipv -a -t 10.0.0.3:82 -r 10.2.2.2:82 -m -w 1
ipv -a -t 10.0.0.3:82 -r 10.2.3.2:82 -m -w 1 -x 3
ipv -a -t 10.0.0.3:82 -r 10.2.4.2:82 -m -w 1
ipv -A -t 10.0.0.4:83 -s mh -b mh-fallback
ipv -a -t 10.0.0.4:83 -r 10.2.1.2:83 -m -w 1
ipv -a -t 10.0.0.4:83 -r 10.2.2.2:83 -m -w 1
ipv -a -t 10.0.0.4:83 -r 10.2.3.2:83 -m -w 1 -x 3
ipv -a -t 10.0.0.4:83 -r 10.2.4.2:83 -m -w 1
rules
svc -t 10.0.0.1:80
burst closed 1 1 40 10.0.0.1 80
burst closed 1 1 8 10.0.0.1 80
svc -t 10.0.0.2:81
for p in $(seq 20001 20020); do conn closed 10.1.2.1 $p 10.0.0.2 81; done
for p in $(seq 20001 20008); do conn closed 10.1.2.2 $p 10.0.0.2 81; done
svc -t 10.0.0.3:82
cmd -e -t 10.0.0.3:82 -r 10.2.4.2:82 -m -w 0
burst closed 3 1 40 10.0.0.3 82
svc -t 10.0.0.4:83
cmd -e -t 10.0.0.4:83 -r 10.2.4.2:83 -m -w 0
burst closed 3 1 40 10.0.0.4 83
closeall
