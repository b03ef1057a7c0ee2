# conn_reuse_mode: a client reconnects from the same address:port.
#  1. default mode 1: the old conn is in TIME_WAIT; the new SYN expires it
#     and is scheduled afresh (rr: the next server);
#  2. mode 0: the TIME_WAIT entry is reused, same server;
#  3. mode 1, the old entry still ESTABLISHED: the client's socket was
#     aborted with its RST dropped by tc (rstdrop), so neither IPVS nor the
#     real server saw it end. The new SYN follows the ESTABLISHED entry to the
#     old server, which still has the old connection; the client's RST
#     answers are dropped too, so the connect times out;
#  4. the same with the client's RST let through: the old server answers the
#     new SYN with a (challenge) ACK, the client resets, IPVS moves the
#     entry to CLOSE, and the client's retransmitted SYN (sent at once) is
#     rescheduled (the "# challenge-ack" note).
# The client netns sets tcp_tw_reuse=1, so its own TIME_WAIT socket does not
# block the reuse (it needs 1 s since the last timestamp: the pauses).
. /share/lib.sh
setup 3 80
$IP netns exec cl sh -c 'echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse'
echo "# client netns: net.ipv4.tcp_tw_reuse = 1"
ipv -A -t 10.0.0.1:80 -s rr
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
rules
svc -t 10.0.0.1:80
# 1. mode 1 (default), TIME_WAIT
conn closed 10.1.1.1 40001 10.0.0.1 80
lnc
pause 2
conn closed 10.1.1.1 40001 10.0.0.1 80
lnc
pause 2
conn held 10.1.1.1 40001 10.0.0.1 80
lnc
hclose 10.1.1.1:40001
# 2. mode 0
vsctl conn_reuse_mode 0
conn closed 10.1.1.2 40002 10.0.0.1 80
lnc
pause 2
conn closed 10.1.1.2 40002 10.0.0.1 80
lnc
pause 2
conn held 10.1.1.2 40002 10.0.0.1 80
lnc
hclose 10.1.1.2:40002
vsctl conn_reuse_mode 1
# 3. the old entry still ESTABLISHED
conn held 10.1.1.3 40003 10.0.0.1 80
rstdrop on
habort 10.1.1.3:40003
lnc
conn held 10.1.1.3 40003 10.0.0.1 80
lnc
rstdrop off
# 4. again, with the client's RST let through
conn held 10.1.1.4 40004 10.0.0.1 80
rstdrop on
habort 10.1.1.4:40004
rstdrop off
lnc
old=$(ipvsadm -Lnc | awk '$4 == "10.1.1.4:40004" { print $6 }')
echo "# challenge-ack $old: the first SYN follows the ESTABLISHED entry to $old, whose socket is still open and answers with an ACK; the client resets (RST: the entry goes to CLOSE) and resends the SYN at once, and that SYN is rescheduled"
conn held 10.1.1.4 40004 10.0.0.1 80
lnc
closeall
