/* synccap: the oracle guest's busybox nc has no UDP, so capture.sh uses this.
 *   synccap listen PORT GROUP IFADDR SECONDS  join GROUP on the interface with address
 *       IFADDR, print every datagram to PORT as one line of hex, for SECONDS seconds
 *   synccap send SRCPORT DSTADDR DSTPORT COUNT  send COUNT small datagrams, 0.2 s apart
 * Build: gcc -static -O2 -o synccap synccap.c (a test aid, not part of rvs). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int udp_socket(int port) {
	int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); exit(1); }
	return fd;
}

int main(int argc, char **argv) {
	if (argc == 6 && !strcmp(argv[1], "listen")) {
		int fd = udp_socket(atoi(argv[2]));
		struct ip_mreq mreq;
		inet_pton(AF_INET, argv[3], &mreq.imr_multiaddr);
		inet_pton(AF_INET, argv[4], &mreq.imr_interface);
		if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0) { perror("join"); return 1; }
		time_t end = time(NULL) + atoi(argv[5]);
		struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		unsigned char buf[65536];
		while (time(NULL) < end) {
			ssize_t n = recv(fd, buf, sizeof buf, 0);
			if (n < 0) continue;
			for (ssize_t i = 0; i < n; i++) printf("%02x", buf[i]);
			printf("\n");
			fflush(stdout);
		}
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "send")) {
		int fd = udp_socket(atoi(argv[2]));
		struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
		inet_pton(AF_INET, argv[3], &to.sin_addr);
		for (int i = 0; i < atoi(argv[5]); i++) {
			sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof to);
			usleep(200000);
		}
		return 0;
	}
	fprintf(stderr, "usage: synccap listen PORT GROUP IFADDR SECONDS | send SRCPORT DSTADDR DSTPORT COUNT\n");
	return 2;
}
