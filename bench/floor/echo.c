/* The floor of a DNS server's cost on this machine: answer every query by flipping QR and
   sending it back (no lookup, no answer records). From ../shared/bench/floor/echo.c, with a
   TCP mode added for bench/run.py.
     echo PORT 1 [PAD]   UDP, one recvfrom + one sendto per query (what petdns and Knot's
                   basic loop do); with PAD, every reply is the query and PAD zero bytes, so that
                   it is as large as a real answer (the kernel's cost grows with the bytes sent)
     echo PORT 2   UDP, recvmmsg/sendmmsg, up to 64 per call
     echo PORT 3   TCP, kept-open connections (dnsperf -m tcp): one thread, epoll, every
                   length-prefixed message read is flipped and written back, the messages of
                   one read in one write
   UDP sockets get the receive buffer petdns asks for (4 MiB).
   Build: cc -O2 -o echo echo.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#define B 64
#define CONN_BUF 65536

struct conn { int fd; size_t len; unsigned char buf[CONN_BUF]; };

static int tcp_echo(int port) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("bind/listen"); return 1; }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[B];
  for (;;) {
    int n = epoll_wait(ep, evs, B, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          c->fd = fd;
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      ssize_t r = read(c->fd, c->buf + c->len, CONN_BUF - c->len);
      if (r == 0 || (r < 0 && errno != EAGAIN)) { close(c->fd); free(c); continue; }
      if (r < 0) continue;
      c->len += r;
      size_t off = 0;
      while (c->len - off >= 2) {
        size_t m = (size_t)c->buf[off] << 8 | c->buf[off + 1];
        if (c->len - off < 2 + m) break;
        if (m >= 3) c->buf[off + 4] |= 0x80;
        off += 2 + m;
      }
      for (size_t w = 0; w < off;) {
        ssize_t k = write(c->fd, c->buf + w, off - w);
        if (k < 0 && errno == EAGAIN) { struct pollfd p = {c->fd, POLLOUT, 0}; poll(&p, 1, -1); continue; }
        if (k < 0) break;
        w += k;
      }
      memmove(c->buf, c->buf + off, c->len - off);
      c->len -= off;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) { fprintf(stderr, "usage: echo PORT 1|2|3 [PAD]\n"); return 2; }
  int port = atoi(argv[1]), mode = atoi(argv[2]), pad = argc == 4 ? atoi(argv[3]) : 0;
  if (pad < 0 || pad > 1400) { fprintf(stderr, "PAD must be in [0, 1400]\n"); return 2; }
  if (mode == 3) return tcp_echo(port);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  /* The receive buffer petdns asks for (src/dns/server.rs): with the default (208 KiB here) the
     floor dropped some queries of dnsperf's bursts at 250,000 qps, each holding one of dnsperf's
     outstanding slots until its timeout, so the floor was measured at a lower load than petdns. */
  int rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(fd, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
  static char buf[B][3000];
  struct sockaddr_in from[B];
  if (mode == 1) {
    for (;;) {
      socklen_t fl = sizeof from[0];
      ssize_t n = recvfrom(fd, buf[0], 1500, 0, (struct sockaddr *)&from[0], &fl);
      if (n < 12) continue;
      buf[0][2] |= 0x80;
      if (pad) memset(buf[0] + n, 0, pad);
      sendto(fd, buf[0], n + pad, 0, (struct sockaddr *)&from[0], fl);
    }
  }
  struct mmsghdr m[B];
  struct iovec iov[B];
  for (;;) {
    for (int i = 0; i < B; i++) {
      iov[i].iov_base = buf[i]; iov[i].iov_len = 1500;
      memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
      m[i].msg_hdr.msg_iov = &iov[i]; m[i].msg_hdr.msg_iovlen = 1;
      m[i].msg_hdr.msg_name = &from[i]; m[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int n = recvmmsg(fd, m, B, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) { buf[i][2] |= 0x80; iov[i].iov_len = m[i].msg_len; }
    sendmmsg(fd, m, n, 0);
  }
}
