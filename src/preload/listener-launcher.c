/*
 * listener-launcher PARENT_PID PROGRAM [ARG...]
 *
 * Runs PROGRAM so that it gets SIGKILL when the process that started it dies, however it
 * dies. The mux starts every Runner.Listener through this: Node cannot set
 * PR_SET_PDEATHSIG for a child, and a listener that outlived a SIGKILLed mux would go on
 * taking jobs that nothing supervises.
 *
 * PARENT_PID is the pid of the starter as the starter saw it. If the starter died before
 * prctl() took effect, this process has already been re-parented and no death signal will
 * ever come: it then kills itself instead of running PROGRAM.
 *
 * The death signal survives execve() (not for set-user-id programs, which the runner's are
 * not). The listener's own children (the worker) do not inherit it: the worker notices the
 * listener's pipe closing and ends its build itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Exit codes of the launcher itself, outside what Runner.Listener uses (0..7). */
enum { EXIT_USAGE = 64, EXIT_PRCTL = 70, EXIT_EXEC = 127 };

static int parse_pid(const char *text, pid_t *out) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value <= 0 || value > 0x7fffffffL) return -1;
  *out = (pid_t)value;
  return 0;
}

int main(int argc, char **argv) {
  pid_t parent;
  if (argc < 3 || parse_pid(argv[1], &parent) != 0) {
    fprintf(stderr, "listener-launcher: usage: listener-launcher PARENT_PID PROGRAM [ARG...]\n");
    return EXIT_USAGE;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fprintf(stderr, "listener-launcher: prctl(PR_SET_PDEATHSIG) failed: %s\n", strerror(errno));
    return EXIT_PRCTL;
  }
  if (getppid() != parent) {
    /* The starter is gone already: do what the death signal would have done. */
    raise(SIGKILL);
    return EXIT_PRCTL;
  }
  execv(argv[2], &argv[2]);
  fprintf(stderr, "listener-launcher: cannot run %s: %s\n", argv[2], strerror(errno));
  return EXIT_EXEC;
}
