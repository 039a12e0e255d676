/*
 * preload-probe.c — the program probe.ts runs under LD_PRELOAD=preload.so at mux start.
 *
 * It touches <root>/<name> through every entry point the runner and its tools use —
 * BOTH stat families: the pre-2.33 __xstat64/__lxstat64/__fxstatat64 that .NET's
 * System.Native imports, and the stat64/lstat64/fstatat64/statx a current build calls —
 * and through several spellings of the same path (./, //, bin/.., cwd-relative,
 * dirfd-relative). It checks that every one of them sees the same (slot) file, and
 * reports the first disagreement. probe.ts then checks on disk that the effects landed
 * in the slot directory and not in the root.
 *
 *   preload-probe missing <root> <name>            every lookup must fail with ENOENT
 *   preload-probe write   <root> <name> <content>  create+truncate via open64, then fopen "w"
 *   preload-probe present <root> <name> <content>  every lookup sees a regular file holding content
 *   preload-probe unlink  <root> <name>            unlink succeeds, a second one gives ENOENT
 *
 * Output: "ok <phase> <n> checks" and exit 0, or "FAIL <call> <path>: <detail>" and
 * exit 1. It never prints file contents (the real root may hold credentials).
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Declared by hand, as glibc < 2.33 headers did: a binary linked this way imports
   __xstat64@GLIBC_2.2.5 (x86_64), the entry point the runner's .NET runtime calls. */
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
#if defined(__x86_64__)
#define STAT_VER 1
#else
#define STAT_VER 0
#endif

#define MAX_SPELLINGS 6

struct spelling {
    char path[PATH_MAX]; /* for path-based calls, or the relative name */
    int dirfd;           /* AT_FDCWD, or a descriptor on the root */
    const char *label;
};

static struct spelling spellings[MAX_SPELLINGS];
static int spelling_count;
static int checks;
static int root_fd = -1;

static void fail(const char *call, const struct spelling *s, const char *detail)
{
    printf("FAIL %s %s%s: %s\n", call, s->dirfd == AT_FDCWD ? "" : "<root fd>/", s->path, detail);
    fflush(stdout);
    exit(1);
}

static void add(const char *label, int dirfd, const char *fmt, const char *a, const char *b)
{
    struct spelling *s = &spellings[spelling_count++];
    s->label = label;
    s->dirfd = dirfd;
    if ((size_t)snprintf(s->path, sizeof s->path, fmt, a, b) >= sizeof s->path) {
        printf("FAIL setup: path too long\n");
        exit(2);
    }
}

/* The spellings the runner (absolute from its root), shells (relative to cwd) and
   tools using *at() produce; all must resolve to the one slot file. */
static void build_spellings(const char *root, const char *name)
{
    add("absolute", AT_FDCWD, "%s/%s", root, name);
    add("dot", AT_FDCWD, "%s/./%s", root, name);
    add("double-slash", AT_FDCWD, "%s//%s", root, name);
    struct stat64 st;
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin", root);
    if (lstat64(bin, &st) == 0 && S_ISDIR(st.st_mode))
        add("bin-dotdot", AT_FDCWD, "%s/bin/../%s", root, name);
    if (chdir(root) != 0) {
        printf("FAIL setup: chdir %s: %s\n", root, strerror(errno));
        exit(2);
    }
    add("cwd-relative", AT_FDCWD, "%s%s", "", name);
    root_fd = open(root, O_RDONLY | O_DIRECTORY);
    if (root_fd < 0) {
        printf("FAIL setup: open %s: %s\n", root, strerror(errno));
        exit(2);
    }
    add("dirfd-relative", root_fd, "%s%s", "", name);
}

/* One stat result, whichever call produced it. */
struct result {
    int rc;
    int err;
    int is_reg;
    long long size;
};

#define FROM64(st) ((struct result){0, 0, S_ISREG((st).st_mode), (long long)(st).st_size})

static int stat_calls(const struct spelling *s, struct result *out, const char **names)
{
    int n = 0;
    struct stat64 st;
    struct statx stx;
    if (s->dirfd == AT_FDCWD) {
        names[n] = "stat64";
        out[n++] = stat64(s->path, &st) == 0 ? FROM64(st) : (struct result){-1, errno, 0, 0};
        names[n] = "lstat64";
        out[n++] = lstat64(s->path, &st) == 0 ? FROM64(st) : (struct result){-1, errno, 0, 0};
        names[n] = "__xstat64";
        out[n++] = __xstat64(STAT_VER, s->path, &st) == 0 ? FROM64(st)
                                                          : (struct result){-1, errno, 0, 0};
        names[n] = "__lxstat64";
        out[n++] = __lxstat64(STAT_VER, s->path, &st) == 0 ? FROM64(st)
                                                           : (struct result){-1, errno, 0, 0};
        names[n] = "access";
        out[n++] = access(s->path, F_OK) == 0 ? (struct result){0, 0, -1, -1}
                                              : (struct result){-1, errno, 0, 0};
    }
    names[n] = "fstatat64";
    out[n++] = fstatat64(s->dirfd, s->path, &st, AT_SYMLINK_NOFOLLOW) == 0
                   ? FROM64(st)
                   : (struct result){-1, errno, 0, 0};
    names[n] = "__fxstatat64";
    out[n++] = __fxstatat64(STAT_VER, s->dirfd, s->path, &st, 0) == 0
                   ? FROM64(st)
                   : (struct result){-1, errno, 0, 0};
    names[n] = "statx";
    out[n++] = statx(s->dirfd, s->path, 0, STATX_BASIC_STATS, &stx) == 0
                   ? (struct result){0, 0, S_ISREG(stx.stx_mode), (long long)stx.stx_size}
                   : (struct result){-1, errno, 0, 0};
    names[n] = "faccessat";
    out[n++] = faccessat(s->dirfd, s->path, F_OK, 0) == 0 ? (struct result){0, 0, -1, -1}
                                                          : (struct result){-1, errno, 0, 0};
    return n;
}

static void phase_missing(void)
{
    char detail[128];
    for (int i = 0; i < spelling_count; i++) {
        const struct spelling *s = &spellings[i];
        struct result r[16];
        const char *names[16];
        int n = stat_calls(s, r, names);
        for (int k = 0; k < n; k++, checks++) {
            if (r[k].rc == 0) {
                snprintf(detail, sizeof detail,
                         "expected ENOENT from the empty slot directory, but a file of %lld "
                         "bytes was found (the root's own file?)",
                         r[k].size);
                fail(names[k], s, detail);
            }
            if (r[k].err != ENOENT) {
                snprintf(detail, sizeof detail, "expected ENOENT, got %s", strerror(r[k].err));
                fail(names[k], s, detail);
            }
        }
        int fd = openat(s->dirfd, s->path, O_RDONLY);
        checks++;
        if (fd >= 0 || errno != ENOENT) {
            snprintf(detail, sizeof detail, "expected ENOENT, got %s",
                     fd >= 0 ? "an open file" : strerror(errno));
            fail("openat(O_RDONLY)", s, detail);
        }
    }
}

static void write_all(int fd, const char *data, const char *call, const struct spelling *s)
{
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len) {
        close(fd);
        fail(call, s, "short write");
    }
    if (close(fd) != 0)
        fail(call, s, strerror(errno));
}

static void phase_write(const char *content)
{
    const struct spelling *s = &spellings[0];
    /* Longer than content: the fopen "w" below must truncate it (O_TRUNC through fopen). */
    char longer[256];
    snprintf(longer, sizeof longer, "%s-and-more-bytes-that-must-be-truncated", content);
    int fd = open64(s->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    checks++;
    if (fd < 0)
        fail("open64(O_CREAT|O_TRUNC)", s, strerror(errno));
    write_all(fd, longer, "open64(O_CREAT|O_TRUNC)", s);
    FILE *f = fopen(spellings[1].path, "w");
    checks++;
    if (f == NULL)
        fail("fopen(w)", &spellings[1], strerror(errno));
    if (fputs(content, f) == EOF || fclose(f) != 0)
        fail("fopen(w)", &spellings[1], "write failed");
}

static void read_back(int fd, const char *content, const char *call, const struct spelling *s)
{
    char buf[512];
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got < 0)
        fail(call, s, strerror(errno));
    buf[got] = '\0';
    if (strcmp(buf, content) != 0)
        fail(call, s, "read back different content than was written through the root path");
}

static void phase_present(const char *content)
{
    char detail[160];
    long long want = (long long)strlen(content);
    for (int i = 0; i < spelling_count; i++) {
        const struct spelling *s = &spellings[i];
        struct result r[16];
        const char *names[16];
        int n = stat_calls(s, r, names);
        for (int k = 0; k < n; k++, checks++) {
            if (r[k].rc != 0) {
                snprintf(detail, sizeof detail, "expected the slot's file, got %s",
                         strerror(r[k].err));
                fail(names[k], s, detail);
            }
            if (r[k].is_reg == 0 || (r[k].size >= 0 && r[k].size != want)) {
                snprintf(detail, sizeof detail,
                         "expected a regular file of %lld bytes (the slot's), got %lld bytes", want,
                         r[k].size);
                fail(names[k], s, detail);
            }
        }
        int fd = openat(s->dirfd, s->path, O_RDONLY);
        checks++;
        if (fd < 0)
            fail("openat(O_RDONLY)", s, strerror(errno));
        read_back(fd, content, "openat(O_RDONLY)", s);
        if (s->dirfd == AT_FDCWD) {
            fd = open64(s->path, O_RDONLY);
            checks++;
            if (fd < 0)
                fail("open64(O_RDONLY)", s, strerror(errno));
            read_back(fd, content, "open64(O_RDONLY)", s);
            FILE *f = fopen(s->path, "r");
            checks++;
            if (f == NULL)
                fail("fopen(r)", s, strerror(errno));
            read_back(dup(fileno(f)), content, "fopen(r)", s);
            fclose(f);
        }
    }
}

static void phase_unlink(void)
{
    const struct spelling *s = &spellings[0];
    checks++;
    if (unlink(s->path) != 0)
        fail("unlink", s, strerror(errno));
    checks++;
    if (unlink(s->path) == 0 || errno != ENOENT)
        fail("unlink", s, "a second unlink did not fail with ENOENT");
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s missing|write|present|unlink <root> <name> [content]\n",
                argv[0]);
        return 2;
    }
    const char *phase = argv[1];
    const char *content = argc > 4 ? argv[4] : NULL;
    int needs_content = strcmp(phase, "write") == 0 || strcmp(phase, "present") == 0;
    if (needs_content && content == NULL) {
        fprintf(stderr, "%s: phase %s needs <content>\n", argv[0], phase);
        return 2;
    }
    build_spellings(argv[2], argv[3]);
    if (strcmp(phase, "missing") == 0)
        phase_missing();
    else if (strcmp(phase, "write") == 0)
        phase_write(content);
    else if (strcmp(phase, "present") == 0)
        phase_present(content);
    else if (strcmp(phase, "unlink") == 0)
        phase_unlink();
    else {
        fprintf(stderr, "%s: unknown phase %s\n", argv[0], phase);
        return 2;
    }
    printf("ok %s %d checks\n", phase, checks);
    return 0;
}
