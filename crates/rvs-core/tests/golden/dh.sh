# dh: destination hashing, keyed on the destination address. A fwmark
# service (mark 1 = any of the VIPs 10.0.1.1-40, marked by tc) so that one
# service sees 40 destination addresses. Weights 1,2,1,0; -x 4 on the last
# weight-1 dest (no fallback in dh: its buckets then give no dest).
. /share/lib.sh
setup 4 80
fwmarks
ipv -A -f 1 -s dh
ipv -a -f 1 -r 10.2.1.2:80 -m -w 1
ipv -a -f 1 -r 10.2.2.2:80 -m -w 2
ipv -a -f 1 -r 10.2.3.2:80 -m -w 1 -x 4
ipv -a -f 1 -r 10.2.4.2:80 -m -w 0
rules
svc -f 1
for v in $(seq 1 40); do conn closed 10.1.1.1 0 10.0.1.$v 80; done
for v in $(seq 1 12); do conn closed 10.1.2.$v 0 10.0.1.$v 80; done
closeall
