/*
 * worker-shim spawnclient R W
 *
 * Installed as <root>/bin/Runner.Worker: Runner.Listener starts it for every job
 * (RUNNER-PROTOCOL §1). It does not run the job. It hands the listener's pipe (fd R) to the
 * mux over the Unix socket named by CBACTIONS_DISPATCH_SOCKET, prints the reason lines the
 * mux sends, and exits with the code the mux decides. The contract is docs/worker-shim.md;
 * this file follows it message for message.
 *
 * Without a mux (no variable, connect refused, closed or no ACCEPT within 10 s) it has read
 * nothing from fd R, so it execs <dir of its executable>/Runner.Worker.fallback with the
 * same argv and descriptors: the script that runs `cbactions worker`.
 *
 * Memory stays small and flat: no heap, one 64 KiB outgoing buffer (HELLO, then DATA in
 * chunks: a 50 MB job streams through it) and one buffer for the largest mux message.
 * SIGTERM/SIGINT arrive through a signalfd polled with everything else; there is no signal
 * handler at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* `cbactions install-worker` looks for this text to recognise an installed shim. */
__attribute__((used)) static const char INSTALL_MARKER[] = "cbactions native Runner.Worker shim";

#define DISPATCH_SOCKET_ENV "CBACTIONS_DISPATCH_SOCKET"
#define FALLBACK_NAME "Runner.Worker.fallback"
#define HELLO_VERSION "cbactions-shim 1"
#define FORWARDED_ENV_PREFIX "CBACTIONS_"

enum {
  MSG_HELLO = 1,
  MSG_DATA = 2,
  MSG_EOF = 3,
  MSG_SIGNAL = 4,
  MSG_ACCEPT = 101,
  MSG_LINE = 102,
  MSG_EXIT = 103,
};

#define HEADER_BYTES 8u
#define MAX_HELLO_BODY (64u * 1024u)
#define MAX_EOF_BODY 4096u
#define MAX_LINE_BODY 4096u
/* The doc allows DATA up to 1 MiB; 64 KiB (a pipe's capacity) is plenty per message. */
#define DATA_CHUNK (64u * 1024u)
#define ACCEPT_TIMEOUT_MS 10000

/* Exit code for everything that is not the mux's decision: an invalid worker exit code,
 * so the listener shows our one stderr line on the job (RUNNER-PROTOCOL §3). */
#define EXIT_FAILED 1

/* Outgoing bytes: HELLO first, later DATA/EOF/SIGNAL. Big enough for the largest HELLO. */
#define OUT_CAPACITY (HEADER_BYTES + MAX_HELLO_BODY)
static unsigned char out_buf[OUT_CAPACITY];
static size_t out_start, out_end;

/* Incoming bytes: never more than one whole message of the largest kind. */
#define IN_CAPACITY (HEADER_BYTES + MAX_LINE_BODY)
static unsigned char in_buf[IN_CAPACITY];
static size_t in_len;

static void write_all(int fd, const void *data, size_t len) {
  const unsigned char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; /* stderr gone: nothing better to tell anyone */
    }
    p += n;
    len -= (size_t)n;
  }
}

/* One line on stderr, the listener's record of a failed worker. */
static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
  line[len++] = '\n';
  write_all(STDERR_FILENO, line, len);
}

static int parse_fd(const char *text) {
  size_t digits = strlen(text);
  if (digits == 0 || digits > 9) return -1;
  for (size_t i = 0; i < digits; i++)
    if (text[i] < '0' || text[i] > '9') return -1;
  return atoi(text);
}

static void put_u32(unsigned char *p, uint32_t value) {
  p[0] = (unsigned char)value;
  p[1] = (unsigned char)(value >> 8);
  p[2] = (unsigned char)(value >> 16);
  p[3] = (unsigned char)(value >> 24);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t out_free(void) {
  if (out_start == out_end) out_start = out_end = 0;
  if (out_start > 0 && OUT_CAPACITY - out_end < OUT_CAPACITY / 2) {
    memmove(out_buf, out_buf + out_start, out_end - out_start);
    out_end -= out_start;
    out_start = 0;
  }
  return OUT_CAPACITY - out_end;
}

/* Queues one message; the caller checked out_free(). */
static void out_message(uint32_t type, const void *body, size_t len) {
  put_u32(out_buf + out_end, type);
  put_u32(out_buf + out_end + 4, (uint32_t)len);
  if (len > 0) memcpy(out_buf + out_end + HEADER_BYTES, body, len);
  out_end += HEADER_BYTES + len;
}

/* Builds HELLO in the outgoing buffer. Returns -1 when the entries do not fit. */
static int queue_hello(void) {
  size_t len = 0;
  unsigned char *body = out_buf + HEADER_BYTES;
  char pid_entry[32];
  snprintf(pid_entry, sizeof pid_entry, "pid=%ld", (long)getpid());
  const char *fixed[] = {HELLO_VERSION, pid_entry};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    size_t n = strlen(fixed[i]) + 1;
    memcpy(body + len, fixed[i], n);
    len += n;
  }
  for (char **entry = environ; *entry != NULL; entry++) {
    if (strncmp(*entry, FORWARDED_ENV_PREFIX, strlen(FORWARDED_ENV_PREFIX)) != 0) continue;
    size_t n = strlen(*entry) + 1;
    if (len + 4 + n > MAX_HELLO_BODY) return -1;
    memcpy(body + len, "env:", 4);
    memcpy(body + len + 4, *entry, n);
    len += 4 + n;
  }
  put_u32(out_buf, MSG_HELLO);
  put_u32(out_buf + 4, (uint32_t)len);
  out_start = 0;
  out_end = HEADER_BYTES + len;
  return 0;
}

static sigset_t original_mask;
static struct sigaction original_sigpipe;

/* No mux to hand the job to: run the script shim in our place, fd R still unread. */
static int fallback(char **argv, int sock, int sigfd) {
  if (sock >= 0) close(sock);
  if (sigfd >= 0) close(sigfd);
  /* Exec keeps the signal mask and ignored signals: give the fallback what we were given
   * (a SIGTERM that arrived meanwhile is delivered now, as it would have been to us). */
  sigaction(SIGPIPE, &original_sigpipe, NULL);
  sigprocmask(SIG_SETMASK, &original_mask, NULL);
  char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0) {
    say("cbactions: the job could not be started: cannot find the worker shim's own path (/proc/self/exe: %s) (WORKER_FALLBACK)", strerror(errno));
    return EXIT_FAILED;
  }
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
  if (dir_len + sizeof FALLBACK_NAME > sizeof path) {
    say("cbactions: the job could not be started: the worker shim's directory path is too long (WORKER_FALLBACK)");
    return EXIT_FAILED;
  }
  memcpy(path + dir_len, FALLBACK_NAME, sizeof FALLBACK_NAME);
  char *fallback_argv[] = {path, argv[1], argv[2], argv[3], NULL};
  execv(path, fallback_argv);
  say("cbactions: the job could not be started: cannot run %s: %s (WORKER_FALLBACK)", path, strerror(errno));
  return EXIT_FAILED;
}

/* -1 when there is no mux to talk to (the caller falls back). */
static int connect_mux(const char *path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof address.sun_path) return -1;
  strcpy(address.sun_path, path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return -1;
  /* A Unix connect waits while the listening backlog is full: bound it like the ACCEPT. */
  struct timeval timeout = {.tv_sec = ACCEPT_TIMEOUT_MS / 1000, .tv_usec = 0};
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  int rc;
  do rc = connect(sock, (struct sockaddr *)&address, sizeof address);
  while (rc < 0 && errno == EINTR);
  if (rc < 0 || fcntl(sock, F_SETFL, O_NONBLOCK) < 0) {
    close(sock);
    return -1;
  }
  return sock;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *message_name(uint32_t type) {
  switch (type) {
    case MSG_ACCEPT: return "ACCEPT";
    case MSG_LINE: return "LINE";
    case MSG_EXIT: return "EXIT";
    default: return NULL;
  }
}

static void print_line(const unsigned char *body, size_t len) {
  char line[MAX_LINE_BODY + 1];
  memcpy(line, body, len);
  /* One LINE is one line on the listener's side, whatever the mux put in it. */
  for (size_t i = 0; i < len; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[len] = '\n';
  write_all(STDERR_FILENO, line, len + 1);
}

enum { R_OPEN, R_EOF_PENDING, R_DONE };

int main(int argc, char **argv) {
  if (argc != 4) {
    say("cbactions: the job could not be started: expected the arguments \"spawnclient R W\", got %d argument%s (WORKER_USAGE)", argc - 1, argc == 2 ? "" : "s");
    return EXIT_FAILED;
  }
  if (strcmp(argv[1], "spawnclient") != 0) {
    say("cbactions: the job could not be started: expected \"spawnclient\", got \"%.20s\" (WORKER_USAGE)", argv[1]);
    return EXIT_FAILED;
  }
  int read_fd = parse_fd(argv[2]);
  int write_fd = parse_fd(argv[3]);
  if (read_fd < 0 || write_fd < 0) {
    say("cbactions: the job could not be started: R and W must be file descriptor numbers, got \"%.20s\" \"%.20s\" (WORKER_USAGE)", argv[2], argv[3]);
    return EXIT_FAILED;
  }
  if (fcntl(read_fd, F_GETFD) < 0 || fcntl(write_fd, F_GETFD) < 0) {
    say("cbactions: the job could not be started: file descriptor %d is not open (WORKER_USAGE)", fcntl(read_fd, F_GETFD) < 0 ? read_fd : write_fd);
    return EXIT_FAILED;
  }

  sigaction(SIGPIPE, NULL, &original_sigpipe);
  sigprocmask(SIG_SETMASK, NULL, &original_mask);
  const char *socket_path = getenv(DISPATCH_SOCKET_ENV);
  if (socket_path == NULL || socket_path[0] == '\0') return fallback(argv, -1, -1);

  /* Blocked from here: before ACCEPT a signal stays pending (and reaches the fallback's
   * process as it would have without us); after ACCEPT the signalfd reads it. */
  sigset_t relayed;
  sigemptyset(&relayed);
  sigaddset(&relayed, SIGTERM);
  sigaddset(&relayed, SIGINT);
  sigprocmask(SIG_BLOCK, &relayed, NULL);
  signal(SIGPIPE, SIG_IGN); /* a closed stderr must not kill us; the socket uses MSG_NOSIGNAL */
  int sigfd = signalfd(-1, &relayed, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd < 0) return fallback(argv, -1, -1);

  if (queue_hello() != 0) {
    close(sigfd);
    say("cbactions: the job could not be started: the CBACTIONS_* environment does not fit in the %u bytes the mux accepts (SHIM_HELLO_TOO_LARGE)", MAX_HELLO_BODY);
    return EXIT_FAILED;
  }
  int sock = connect_mux(socket_path);
  if (sock < 0) return fallback(argv, -1, sigfd);

  const long long accept_deadline = now_ms() + ACCEPT_TIMEOUT_MS;
  int accepted = 0;
  int read_state = R_OPEN;
  char eof_text[MAX_EOF_BODY];
  size_t eof_len = 0;
  unsigned pending_signals[2] = {0, 0}; /* SIGTERM, SIGINT */
  const uint32_t signal_numbers[2] = {SIGTERM, SIGINT};
  char send_error[256] = "";

  for (;;) {
    if (accepted) {
      for (int i = 0; i < 2; i++)
        while (pending_signals[i] > 0 && out_free() >= HEADER_BYTES + 4) {
          unsigned char body[4];
          put_u32(body, signal_numbers[i]);
          out_message(MSG_SIGNAL, body, 4);
          pending_signals[i]--;
        }
      if (read_state == R_EOF_PENDING && out_free() >= HEADER_BYTES + eof_len) {
        out_message(MSG_EOF, eof_text, eof_len);
        read_state = R_DONE;
      }
    }
    int can_send = send_error[0] == '\0';
    struct pollfd fds[3] = {
        {.fd = sock, .events = (short)(POLLIN | (can_send && out_end > out_start ? POLLOUT : 0))},
        {.fd = accepted && can_send && read_state == R_OPEN && out_free() > HEADER_BYTES ? read_fd : -1, .events = POLLIN},
        {.fd = accepted ? sigfd : -1, .events = POLLIN},
    };
    int timeout = -1;
    if (!accepted) {
      long long left = accept_deadline - now_ms();
      if (left <= 0) return fallback(argv, sock, sigfd);
      timeout = (int)left;
    }
    int ready = poll(fds, 3, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      if (!accepted) return fallback(argv, sock, sigfd);
      say("cbactions: lost the connection to the mux before the job ended (poll: %s)", strerror(errno));
      return EXIT_FAILED;
    }
    if (ready == 0) continue; /* the deadline check above decides */

    if (fds[2].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(sigfd, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGTERM) pending_signals[0]++;
        if (info.ssi_signo == SIGINT) pending_signals[1]++;
      }
    }

    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
      size_t room = out_free() - HEADER_BYTES;
      if (room > DATA_CHUNK) room = DATA_CHUNK;
      ssize_t n = read(read_fd, out_buf + out_end + HEADER_BYTES, room);
      if (n > 0) {
        put_u32(out_buf + out_end, MSG_DATA);
        put_u32(out_buf + out_end + 4, (uint32_t)n);
        out_end += HEADER_BYTES + (size_t)n;
      } else if (n == 0) {
        read_state = R_EOF_PENDING;
      } else if (errno != EINTR && errno != EAGAIN) {
        int saved = errno;
        int len = snprintf(eof_text, sizeof eof_text, "reading fd %d: %s", read_fd, strerror(saved));
        eof_len = len < 0 ? 0 : (size_t)len < sizeof eof_text ? (size_t)len : sizeof eof_text - 1;
        read_state = R_EOF_PENDING;
      }
    }

    if (fds[0].revents & POLLOUT) {
      ssize_t n = send(sock, out_buf + out_start, out_end - out_start, MSG_NOSIGNAL);
      if (n > 0) {
        out_start += (size_t)n;
      } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
        if (!accepted) return fallback(argv, sock, sigfd);
        /* Keep reading: an EXIT the mux sent before it closed still decides the end. */
        snprintf(send_error, sizeof send_error, "sending: %s", strerror(errno));
        out_start = out_end = 0;
      }
    }

    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(sock, in_buf + in_len, IN_CAPACITY - in_len, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        if (!accepted) return fallback(argv, sock, sigfd);
        const char *detail = n < 0 ? strerror(errno)
                             : in_len > 0 ? "the mux closed it in the middle of a message"
                             : send_error[0] != '\0' ? send_error
                                                     : "the mux closed it without an EXIT";
        say("cbactions: lost the connection to the mux before the job ended (%s)", detail);
        return EXIT_FAILED;
      }
      in_len += (size_t)n;
      while (in_len >= HEADER_BYTES) {
        uint32_t type = get_u32(in_buf);
        uint32_t len = get_u32(in_buf + 4);
        const char *name = message_name(type);
        if (name == NULL) {
          say("cbactions: the mux sent a message the worker shim does not know (type %u, %u bytes) (SHIM_PROTOCOL)", type, len);
          return EXIT_FAILED;
        }
        uint32_t max = type == MSG_LINE ? MAX_LINE_BODY : type == MSG_EXIT ? 4 : 0;
        uint32_t min = type == MSG_EXIT ? 4 : 0;
        if (len > max || len < min || (type == MSG_ACCEPT && accepted)) {
          say("cbactions: the mux sent an invalid %s message (%u bytes%s) (SHIM_PROTOCOL)", name, len, type == MSG_ACCEPT && accepted ? ", a second ACCEPT" : "");
          return EXIT_FAILED;
        }
        if (in_len < HEADER_BYTES + len) break;
        const unsigned char *body = in_buf + HEADER_BYTES;
        if (type == MSG_ACCEPT) {
          accepted = 1;
        } else if (type == MSG_LINE) {
          print_line(body, len);
        } else {
          uint32_t code = get_u32(body);
          if (code > 255) {
            say("cbactions: the mux sent exit code %u, outside 0..255 (SHIM_PROTOCOL)", code);
            return EXIT_FAILED;
          }
          close(sock);
          return (int)code;
        }
        in_len -= HEADER_BYTES + len;
        memmove(in_buf, in_buf + HEADER_BYTES + len, in_len);
      }
    }
  }
}
