/*
 * lvsprobe: tiny TCP/UDP client and server used inside the IPVS oracle guest
 * to produce the golden files in this directory.  Not part of the product.
 * Built statically on the host by regen.sh (gcc -static -O2), copied into
 * the guest next to the scenario script.
 *
 *   lvsprobe serve ADDR PORT...
 *       Listens on ADDR:PORT (TCP and UDP) for every PORT.  Each TCP
 *       connection gets the line "ADDR:PORT\n" (the server's own identity),
 *       then the server reads until EOF and closes.  Each UDP datagram is
 *       answered with the same line.  Runs until killed.
 *
 *   lvsprobe tcp SADDR SPORT DADDR DPORT closed|held
 *       Binds SADDR:SPORT (SPORT 0 = ephemeral), connects to DADDR:DPORT,
 *       reads the identity line.
 *         closed: shutdown(SHUT_WR) (client FIN first), reads until EOF,
 *                 closes, prints "CADDR:CPORT RSID".
 *         held:   forks a child that keeps the connection open (blocks in
 *                 read until the server closes or it is killed); prints
 *                 "CADDR:CPORT RSID CHILDPID".
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

static void mkaddr(struct sockaddr_in *sa, const char *ip, const char *port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)atoi(port));
	if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", ip);
		exit(2);
	}
}

static void fmt(const struct sockaddr_in *sa, char *buf, size_t n)
{
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
	snprintf(buf, n, "%s:%u", ip, ntohs(sa->sin_port));
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

static int serve(int argc, char **argv)
{
	/* argv: ADDR PORT... */
	int n = argc - 1, i;
	struct pollfd *p = calloc(2 * n, sizeof(*p));
	char (*id)[64] = calloc(n, 64);
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < n; i++) {
		struct sockaddr_in sa;
		int one = 1, t, u;
		mkaddr(&sa, argv[0], argv[1 + i]);
		fmt(&sa, id[i], 64);
		t = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(t, (void *)&sa, sizeof(sa)) || listen(t, 128)) { perror("tcp bind"); return 2; }
		u = socket(AF_INET, SOCK_DGRAM, 0);
		if (bind(u, (void *)&sa, sizeof(sa))) { perror("udp bind"); return 2; }
		p[2 * i] = (struct pollfd){ .fd = t, .events = POLLIN };
		p[2 * i + 1] = (struct pollfd){ .fd = u, .events = POLLIN };
	}
	for (;;) {
		if (poll(p, 2 * n, -1) < 0) continue;
		for (i = 0; i < 2 * n; i++) {
			char line[80];
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
					while (read(c, buf, sizeof(buf)) > 0) ;
					close(c);
					_exit(0);
				}
				close(c);
			} else {
				char buf[512];
				struct sockaddr_in from;
				socklen_t fl = sizeof(from);
				if (recvfrom(p[i].fd, buf, sizeof(buf), 0, (void *)&from, &fl) < 0) continue;
				sendto(p[i].fd, line, strlen(line), 0, (void *)&from, fl);
			}
		}
	}
}

/* reads one line (without '\n') into buf, up to ms; returns length or -1 */
static int readline(int fd, char *buf, int n, int ms)
{
	int len = 0;
	while (len < n - 1) {
		ssize_t r;
		if (!waitin(fd, ms)) return -1;
		r = read(fd, buf + len, 1);
		if (r <= 0) return -1;
		if (buf[len] == '\n') break;
		len++;
	}
	buf[len] = 0;
	return len;
}

static void onalarm(int sig) { (void)sig; }

static int client(int argc, char **argv, int udp)
{
	/* argv: SADDR SPORT DADDR DPORT [closed|held] */
	struct sockaddr_in src, dst, me;
	socklen_t ml = sizeof(me);
	char cid[64], rid[80];
	int one = 1, s, held = 0;
	if (argc < 4 || (!udp && argc < 5)) { fprintf(stderr, "usage\n"); return 2; }
	if (!udp) held = !strcmp(argv[4], "held");
	mkaddr(&src, argv[0], argv[1]);
	mkaddr(&dst, argv[2], argv[3]);
	fmt(&src, cid, sizeof(cid));
	s = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (void *)&src, sizeof(src))) {
		printf("%s none %s\n", cid, ename(errno));
		return 1;
	}
	getsockname(s, (void *)&me, &ml);
	fmt(&me, cid, sizeof(cid));
	if (!udp) { /* bound connect to 5 s: SIGALRM interrupts it (EINTR) */
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = onalarm;
		sigaction(SIGALRM, &sa, NULL);
		alarm(5);
	}
	if (connect(s, (void *)&dst, sizeof(dst))) {
		printf("%s none %s\n", cid, errno == EINTR ? "ETIMEDOUT" : ename(errno));
		return 1;
	}
	alarm(0);
	getsockname(s, (void *)&me, &ml);
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
			char buf[256];
			setsid();
			close(0); close(1); close(2);
			while (read(s, buf, sizeof(buf)) > 0) ;
			_exit(0);
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
	fprintf(stderr, "usage: lvsprobe serve ADDR PORT... | tcp SADDR SPORT DADDR DPORT closed|held | udp SADDR SPORT DADDR DPORT\n");
	return 2;
}
