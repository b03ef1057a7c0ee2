# A real server deleted under held conns, and data sent on them afterwards
# ("send": one line from the client; the server answers every line).
#  1. expire_nodest_conn 0 (default): the entry stays, the client's data is
#     dropped; the server is re-added within a minute: the kernel takes the
#     same dest back from its trash, with its counters (stats: Conns), and
#     the held conn works again;
#  2. expire_nodest_conn 1: the deleted server's entries are expired, the
#     client's data meets the director's own stack, and a new SYN from the
#     same client address:port is scheduled afresh;
#  3. quiesce (-w 0) a server with a held conn: the conn keeps working.
. /share/lib.sh
setup 3 80
ipv -A -t 10.0.0.1:80 -s rr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
rules
svc -t 10.0.0.1:80
conn held 10.1.1.1 40001 10.0.0.1 80
conn held 10.1.1.2 40002 10.0.0.1 80
conn held 10.1.1.3 40003 10.0.0.1 80
conn closed 10.1.1.4 40004 10.0.0.1 80
hsend 10.1.1.1:40001
stats
# 1. expire_nodest_conn 0
cmd -d -t 10.0.0.1:80 -r 10.2.3.2:80
counts
lnc
hsend 10.1.1.1:40001
lnc
conn held 10.1.1.5 40005 10.0.0.1 80
stats
cmd -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
counts
stats
hsend 10.1.1.1:40001
lnc
# 2. expire_nodest_conn 1
vsctl expire_nodest_conn 1
cmd -d -t 10.0.0.1:80 -r 10.2.2.2:80
counts
lnc
hsend 10.1.1.2:40002
lnc
conn held 10.1.1.2 40002 10.0.0.1 80
lnc
# 3. quiesce
cmd -e -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 0
hsend 10.1.1.3:40003
conn held 10.1.1.6 40006 10.0.0.1 80
lnc
stats
closeall
