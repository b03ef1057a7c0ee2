/*
 * lvsprobe: tiny TCP/UDP client and server used inside the IPVS oracle guest
 * to produce the golden files in this directory.  Not part of the product.
 * Built statically on the host by regen.sh (gcc -static -O2), copied into
 * the guest next to the scenario script.
 *
 *   lvsprobe serve ADDR[,ADDR...] PORT...
 *       Listens on ADDR:PORT (TCP and UDP) for every listed ADDR (IPv4 or
 *       IPv6, bound with IP_FREEBIND so it may be added to an interface
 *       later) and every PORT.  Each TCP connection gets the line
 *       "ID:PORT\n", where ID is the first listed address of the same
 *       family (the server's identity; IPv6 as "[ADDR]:PORT"), then the
 *       server reads until EOF, answering every chunk of data it reads with
 *       the same line, and closes.  Each UDP datagram is answered with the
 *       same line.  Runs until killed.  (Extra addresses serve a VIP on the
 *       loopback for direct routing and tunnelling.)
 *
 *   lvsprobe tcp SADDR SPORT DADDR DPORT closed|held
 *       Binds SADDR:SPORT (SPORT 0 = ephemeral), connects to DADDR:DPORT,
 *       reads the identity line.
 *         closed: shutdown(SHUT_WR) (client FIN first), reads until EOF,
 *                 closes, prints "CADDR:CPORT RSID".
 *         held:   forks a child that keeps the connection open (blocks in
 *                 read until the server closes or it is killed); prints
 *                 "CADDR:CPORT RSID CHILDPID".  The child obeys signals:
 *                 SIGTERM: dies, so the kernel closes the socket (FIN).
 *                 SIGUSR1: writes "?\n" and waits up to 3 s for a reply
 *                   line; writes "RSID" or "none ERRNAME" (ETIMEDOUT,
 *                   ECONNRESET, EOF) to /tmp/lvsprobe.CHILDPID.
 *                 SIGUSR2: aborts the connection (SO_LINGER 0, close: the
 *                   kernel sends RST) and exits.
 *   Addresses may be IPv4 or IPv6; IPv6 endpoints print as "[ADDR]:PORT".
 *   lvsprobe udp SADDR SPORT DADDR DPORT
 *       Binds SADDR:SPORT, sends one datagram, waits up to 3 s for the reply,
 *       prints "CADDR:CPORT RSID".
 *
 *   On failure prints "CADDR:CPORT none ERRNAME" (CADDR:CPORT as bound) and
 *   exits 1, e.g. "none ECONNREFUSED" when IPVS found no destination and
 *   answered the SYN with ICMP port unreachable.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* an IPv4 or IPv6 socket address; the family follows from the text */
typedef union {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
} addr_t;

static socklen_t alen(const addr_t *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->v6) : sizeof(a->v4);
}

static void mkaddr(addr_t *a, const char *ip, const char *port)
{
	memset(a, 0, sizeof(*a));
	if (strchr(ip, ':')) {
		a->v6.sin6_family = AF_INET6;
		a->v6.sin6_port = htons((unsigned short)atoi(port));
		if (inet_pton(AF_INET6, ip, &a->v6.sin6_addr) == 1) return;
	} else {
		a->v4.sin_family = AF_INET;
		a->v4.sin_port = htons((unsigned short)atoi(port));
		if (inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1) return;
	}
	fprintf(stderr, "bad address %s\n", ip);
	exit(2);
}

/* "A.B.C.D:PORT" or "[V6]:PORT", as ipvsadm prints them */
static void fmt(const addr_t *a, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, n, "[%s]:%u", ip, ntohs(a->v6.sin6_port));
	} else {
		inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof(ip));
		snprintf(buf, n, "%s:%u", ip, ntohs(a->v4.sin_port));
	}
}

static const char *ename(int e)
{
	switch (e) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case EAGAIN: return "EAGAIN";
	default: return "EOTHER";
	}
}

/* wait for fd readable, up to ms; returns 1 if readable */
static int waitin(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do r = poll(&p, 1, ms); while (r < 0 && errno == EINTR);
	return r > 0;
}

/* a bound socket of the given type; IP_FREEBIND lets it bind an address
 * that is not (yet) on an interface */
static int bound(const addr_t *a, int type)
{
	int one = 1, s = socket(a->sa.sa_family, type, 0);
	if (s < 0) { perror("socket"); exit(2); }
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(s, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	if (a->sa.sa_family == AF_INET6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	return s;
}

static int serve(int argc, char **argv)
{
	/* argv: ADDR[,ADDR...] PORT... */
	char *list = strdup(argv[0]), *tok, *save = NULL;
	char *addrs[32];
	int na = 0, np = argc - 1, n, i, j;
	struct pollfd *p;
	char (*id)[80];
	for (tok = strtok_r(list, ",", &save); tok && na < 32; tok = strtok_r(NULL, ",", &save))
		addrs[na++] = tok;
	n = na * np;
	p = calloc(2 * n, sizeof(*p));
	id = calloc(n, 80);
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < na; i++) {
		/* identity: the first listed address of the same family */
		int v6 = strchr(addrs[i], ':') != NULL, first = i;
		for (j = 0; j < i; j++)
			if ((strchr(addrs[j], ':') != NULL) == v6) { first = j; break; }
		for (j = 0; j < np; j++) {
			addr_t sa, ida;
			int k = i * np + j, t, u;
			mkaddr(&sa, addrs[i], argv[1 + j]);
			mkaddr(&ida, addrs[first], argv[1 + j]);
			fmt(&ida, id[k], 80);
			t = bound(&sa, SOCK_STREAM);
			if (bind(t, &sa.sa, alen(&sa)) || listen(t, 128)) { perror("tcp bind"); return 2; }
			u = bound(&sa, SOCK_DGRAM);
			if (bind(u, &sa.sa, alen(&sa))) { perror("udp bind"); return 2; }
			p[2 * k] = (struct pollfd){ .fd = t, .events = POLLIN };
			p[2 * k + 1] = (struct pollfd){ .fd = u, .events = POLLIN };
		}
	}
	for (;;) {
		if (poll(p, 2 * n, -1) < 0) continue;
		for (i = 0; i < 2 * n; i++) {
			char line[96];
			if (!(p[i].revents & POLLIN)) continue;
			snprintf(line, sizeof(line), "%s\n", id[i / 2]);
			if (i % 2 == 0) {
				int c = accept(p[i].fd, NULL, NULL);
				if (c < 0) continue;
				if (fork() == 0) {
					char buf[512];
					int k;
					for (k = 0; k < 2 * n; k++) close(p[k].fd);
					if (write(c, line, strlen(line)) < 0) _exit(1);
					/* every chunk of data is answered with the identity */
					while (read(c, buf, sizeof(buf)) > 0)
						if (write(c, line, strlen(line)) < 0) break;
					close(c);
					_exit(0);
				}
				close(c);
			} else {
				char buf[512];
				addr_t from;
				socklen_t fl = sizeof(from);
				if (recvfrom(p[i].fd, buf, sizeof(buf), 0, &from.sa, &fl) < 0) continue;
				sendto(p[i].fd, line, strlen(line), 0, &from.sa, fl);
			}
		}
	}
}

/* reads one line (without '\n') into buf, up to ms; returns length, or -1
 * (*err: ETIMEDOUT, ECONNRESET or 0 for EOF) */
static int readline_err(int fd, char *buf, int n, int ms, int *err)
{
	int len = 0;
	*err = ETIMEDOUT;
	while (len < n - 1) {
		ssize_t r;
		if (!waitin(fd, ms)) return -1;
		r = read(fd, buf + len, 1);
		if (r <= 0) { *err = r < 0 ? errno : 0; return -1; }
		if (buf[len] == '\n') break;
		len++;
	}
	buf[len] = 0;
	return len;
}

static int readline(int fd, char *buf, int n, int ms)
{
	int err;
	return readline_err(fd, buf, n, ms, &err);
}

static void onalarm(int sig) { (void)sig; }

static volatile sig_atomic_t want_send, want_abort;
static void onusr1(int sig) { (void)sig; want_send = 1; }
static void onusr2(int sig) { (void)sig; want_abort = 1; }

/* the background child of a held connection (see the header) */
static void held_child(int s)
{
	struct sigaction sa;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/lvsprobe.%d", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = onusr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = onusr2;
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		char buf[256];
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 200);
		if (want_abort) {
			struct linger l = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(s);
			_exit(0);
		}
		if (want_send) {
			char rid[80], tmp[80];
			int err = 0;
			FILE *f;
			want_send = 0;
			if (write(s, "?\n", 2) < 0) err = errno;
			else if (readline_err(s, rid, sizeof(rid), 3000, &err) >= 0) err = -1;
			snprintf(tmp, sizeof(tmp), "%s.tmp", path);
			f = fopen(tmp, "w");
			if (f) { /* written whole, then renamed into place */
				if (err == -1) fprintf(f, "%s\n", rid);
				else fprintf(f, "none %s\n", err ? ename(err) : "EOF");
				fclose(f);
				rename(tmp, path);
			}
			continue;
		}
		if (r > 0 && read(s, buf, sizeof(buf)) <= 0) _exit(0);
	}
}

static int client(int argc, char **argv, int udp)
{
	/* argv: SADDR SPORT DADDR DPORT [closed|held] */
	addr_t src, dst, me;
	socklen_t ml = sizeof(me);
	char cid[80], rid[80];
	int s, held = 0;
	if (argc < 4 || (!udp && argc < 5)) { fprintf(stderr, "usage\n"); return 2; }
	if (!udp) held = !strcmp(argv[4], "held");
	mkaddr(&src, argv[0], argv[1]);
	mkaddr(&dst, argv[2], argv[3]);
	fmt(&src, cid, sizeof(cid));
	s = bound(&src, udp ? SOCK_DGRAM : SOCK_STREAM);
	if (bind(s, &src.sa, alen(&src))) {
		printf("%s none %s\n", cid, ename(errno));
		return 1;
	}
	getsockname(s, &me.sa, &ml);
	fmt(&me, cid, sizeof(cid));
	if (!udp) { /* bound connect to 5 s: SIGALRM interrupts it (EINTR) */
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = onalarm;
		sigaction(SIGALRM, &sa, NULL);
		alarm(5);
	}
	if (connect(s, &dst.sa, alen(&dst))) {
		printf("%s none %s\n", cid, errno == EINTR ? "ETIMEDOUT" : ename(errno));
		return 1;
	}
	alarm(0);
	ml = sizeof(me);
	getsockname(s, &me.sa, &ml);
	fmt(&me, cid, sizeof(cid));
	if (udp && send(s, "?\n", 2, 0) < 0) {
		printf("%s none %s\n", cid, ename(errno));
		return 1;
	}
	if (udp) {
		ssize_t r;
		if (!waitin(s, 3000)) { printf("%s none ETIMEDOUT\n", cid); return 1; }
		r = recv(s, rid, sizeof(rid) - 1, 0);
		if (r <= 0) { printf("%s none %s\n", cid, ename(r < 0 ? errno : ECONNRESET)); return 1; }
		rid[r] = 0;
		rid[strcspn(rid, "\n")] = 0;
		printf("%s %s\n", cid, rid);
		return 0;
	}
	if (readline(s, rid, sizeof(rid), 5000) < 0) {
		printf("%s none ENOREPLY\n", cid);
		return 1;
	}
	if (held) {
		pid_t pid;
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			setsid();
			close(0); close(1); close(2);
			held_child(s);
		}
		close(s);
		printf("%s %s %d\n", cid, rid, (int)pid);
		return 0;
	}
	shutdown(s, SHUT_WR);
	{
		char buf[256];
		while (waitin(s, 5000) && read(s, buf, sizeof(buf)) > 0) ;
	}
	close(s);
	printf("%s %s\n", cid, rid);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "serve")) return serve(argc - 2, argv + 2);
	if (argc >= 6 && !strcmp(argv[1], "tcp")) return client(argc - 2, argv + 2, 0);
	if (argc >= 6 && !strcmp(argv[1], "udp")) return client(argc - 2, argv + 2, 1);
	fprintf(stderr, "usage: lvsprobe serve ADDR[,ADDR...] PORT... | tcp SADDR SPORT DADDR DPORT closed|held | udp SADDR SPORT DADDR DPORT\n");
	return 2;
}
