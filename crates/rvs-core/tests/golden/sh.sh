# sh: source hashing. 40 client addresses against weights 1,2,1,0 with -x 4
# on the weight-2 dest (no fallback: its buckets then give no dest and the
# SYN is refused); -b sh-port with chosen source ports; -b sh-fallback with
# an overloaded and a quiesced dest; -b sh-fallback,sh-port.
. /share/lib.sh
setup 4 80 81 82 83
ipv -A -t 10.0.0.1:80 -s sh
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 2 -x 4
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.4.2:80 -m -w 0
ipv -A -t 10.0.0.2:81 -s sh -b sh-port
ipv -a -t 10.0.0.2:81 -r 10.2.1.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.2.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.3.2:81 -m -w 1
ipv -A -t 10.0.0.3:82 -s sh -b sh-fallback
ipv -a -t 10.0.0.3:82 -r 10.2.1.2:82 -m -w 1
ipv -a -t 10.0.0.3:82 -r 10.2.2.2:82 -m -w 1 -x 3
ipv -a -t 10.0.0.3:82 -r 10.2.3.2:82 -m -w 1
ipv -a -t 10.0.0.3:82 -r 10.2.4.2:82 -m -w 1
ipv -A -t 10.0.0.4:83 -s sh -b sh-fallback,sh-port
ipv -a -t 10.0.0.4:83 -r 10.2.1.2:83 -m -w 1
ipv -a -t 10.0.0.4:83 -r 10.2.2.2:83 -m -w 1 -x 2
ipv -a -t 10.0.0.4:83 -r 10.2.3.2:83 -m -w 1
rules
svc -t 10.0.0.1:80
burst closed 1 1 40 10.0.0.1 80
burst closed 1 1 10 10.0.0.1 80
svc -t 10.0.0.2:81
for p in $(seq 20001 20020); do conn closed 10.1.2.1 $p 10.0.0.2 81; done
for p in $(seq 20001 20010); do conn closed 10.1.2.2 $p 10.0.0.2 81; done
svc -t 10.0.0.3:82
cmd -e -t 10.0.0.3:82 -r 10.2.4.2:82 -m -w 0
burst closed 3 1 40 10.0.0.3 82
svc -t 10.0.0.4:83
for p in $(seq 30001 30015); do conn closed 10.1.2.3 $p 10.0.0.4 83; done
closeall
