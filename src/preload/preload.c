/*
 * preload.c — LD_PRELOAD library that gives each Runner.Listener its own config files.
 *
 * Many listeners share one runner installation (<root>). The runner keeps its identity in
 * fixed files directly under <root> (actions/runner HostContext.GetConfigFile: .runner,
 * .credentials, .credentials_rsaparams, .runner_migrated, .credentials_migrated; plus .env
 * and .path read by the listener at startup). For a process that preloads this library,
 * any path that names one of those files in <root> is rewritten to the same file name in
 * a slot directory, so each listener reads and writes its own copy.
 *
 * Environment (read ONCE, in the constructor; set both before exec):
 *   CBACTIONS_PRELOAD_ROOT      absolute path of <root>
 *   CBACTIONS_PRELOAD_SLOT_DIR  absolute path of the slot directory
 * If either is unset, empty or relative, every call passes through untouched.
 *
 * How a path is matched, without normalising strings: a path matches when its last
 * component is one of the names below AND its directory part, resolved by the kernel
 * against the caller's dirfd (or cwd), is the same directory (st_dev, st_ino) as
 * <root>. So "<root>/./.runner", "<root>//.runner", "bin/../.runner" from <root>/bin,
 * a dirfd on <root>, and a symlinked spelling of <root> all match, exactly as the
 * kernel would resolve them. The identity check uses the real fstatat64, never our
 * own hooks, and only runs when the last component already matched a name.
 *
 * Which symbols: the libSystem.Native.so that .NET 8 and .NET 10 ship is built against
 * old glibc headers, so the runner calls open64, __xstat64, __lxstat64, unlink, rename,
 * access, chmod, utimensat and link (the import list, read off the runtime packs, is in
 * docs/preload.md; test/dotnet checks it on every run). Since glibc 2.33 a program
 * built today calls stat/stat64/lstat/fstatat directly (they no longer go through
 * __xstat*), so both families are interposed. Node's bundled libuv calls
 * syscall(SYS_statx, ...) directly for fs.stat, hence the syscall() hook. glibc's own
 * internal calls (fopen -> __open, remove -> __unlink) bypass the PLT, hence hooks on
 * fopen, remove, creat as well.
 */
#define _GNU_SOURCE
/* The fortified inline wrappers in <bits/fcntl2.h> would clash with our definitions. */
#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))

/* Keep in sync with REDIRECTED_FILE_NAMES in contract.ts (a test checks every name). */
static const char *const redirected_names[] = {
    ".runner",
    ".credentials",
    ".credentials_rsaparams",
    ".env",
    ".path",
    ".runner_migrated",
    ".credentials_migrated",
    /* Not in actions/runner's source; operators report it after upgrades, so it is kept
       per slot too rather than shared. */
    ".credentials_rsaparams_migrated",
};
#define LONGEST_NAME (sizeof ".credentials_rsaparams_migrated" - 1)

/* The pre-2.33 stat entry points, not declared by current headers. */
int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* _STAT_VER for the __fxstatat64 fallback (glibc < 2.33 only): 1 on x86_64, 0 on the
   generic-ABI architectures such as aarch64. */
#if defined(__x86_64__)
#define LEGACY_STAT_VER 1
#else
#define LEGACY_STAT_VER 0
#endif

/* ---- real functions, resolved once with dlsym(RTLD_NEXT) ---- */
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static int (*real_creat)(const char *, mode_t);
static int (*real_creat64)(const char *, mode_t);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_stat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_fstatat64)(int, const char *, struct stat64 *, int);
static int (*real___xstat)(int, const char *, struct stat *);
static int (*real___xstat64)(int, const char *, struct stat64 *);
static int (*real___lxstat)(int, const char *, struct stat *);
static int (*real___lxstat64)(int, const char *, struct stat64 *);
static int (*real___fxstatat)(int, int, const char *, struct stat *, int);
static int (*real___fxstatat64)(int, int, const char *, struct stat64 *, int);
static int (*real_statx)(int, const char *, int, unsigned int, struct statx *);
static int (*real_access)(const char *, int);
static int (*real_faccessat)(int, const char *, int, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_remove)(const char *);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static int (*real_truncate)(const char *, off_t);
static int (*real_truncate64)(const char *, off64_t);
static int (*real_chmod)(const char *, mode_t);
static int (*real_utimensat)(int, const char *, const struct timespec *, int);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static long (*real_syscall)(long, ...);

/* ---- configuration, written once by init before init_state becomes DONE ---- */
static int enabled;
static char root_path[PATH_MAX];
static char slot_dir[PATH_MAX];
static size_t slot_len;

enum { INIT_NONE = 0, INIT_RUNNING = 1, INIT_DONE = 2 };
static int init_state;
/* Set while this thread runs init (dlsym may call back into open via a malloc
   implementation) or our own identity check; hooks then pass straight through. */
static TLS int in_preload;

static void *resolve(const char *name)
{
    /* NULL when this glibc lacks the symbol (e.g. stat64 before 2.33): callers of such a
       hook then get ENOSYS instead of a jump through NULL. */
    return dlsym(RTLD_NEXT, name);
}

static int absolute_env(const char *name, char *out, size_t max)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] != '/')
        return 0;
    size_t len = strlen(value);
    if (len >= max)
        return 0;
    memcpy(out, value, len + 1);
    return 1;
}

static void do_init(void)
{
    *(void **)&real_open = resolve("open");
    *(void **)&real_open64 = resolve("open64");
    *(void **)&real_openat = resolve("openat");
    *(void **)&real_openat64 = resolve("openat64");
    *(void **)&real___open_2 = resolve("__open_2");
    *(void **)&real___open64_2 = resolve("__open64_2");
    *(void **)&real___openat_2 = resolve("__openat_2");
    *(void **)&real___openat64_2 = resolve("__openat64_2");
    *(void **)&real_creat = resolve("creat");
    *(void **)&real_creat64 = resolve("creat64");
    *(void **)&real_fopen = resolve("fopen");
    *(void **)&real_fopen64 = resolve("fopen64");
    *(void **)&real_stat = resolve("stat");
    *(void **)&real_stat64 = resolve("stat64");
    *(void **)&real_lstat = resolve("lstat");
    *(void **)&real_lstat64 = resolve("lstat64");
    *(void **)&real_fstatat = resolve("fstatat");
    *(void **)&real_fstatat64 = resolve("fstatat64");
    *(void **)&real___xstat = resolve("__xstat");
    *(void **)&real___xstat64 = resolve("__xstat64");
    *(void **)&real___lxstat = resolve("__lxstat");
    *(void **)&real___lxstat64 = resolve("__lxstat64");
    *(void **)&real___fxstatat = resolve("__fxstatat");
    *(void **)&real___fxstatat64 = resolve("__fxstatat64");
    *(void **)&real_statx = resolve("statx");
    *(void **)&real_access = resolve("access");
    *(void **)&real_faccessat = resolve("faccessat");
    *(void **)&real_unlink = resolve("unlink");
    *(void **)&real_unlinkat = resolve("unlinkat");
    *(void **)&real_remove = resolve("remove");
    *(void **)&real_rename = resolve("rename");
    *(void **)&real_renameat = resolve("renameat");
    *(void **)&real_renameat2 = resolve("renameat2");
    *(void **)&real_truncate = resolve("truncate");
    *(void **)&real_truncate64 = resolve("truncate64");
    *(void **)&real_chmod = resolve("chmod");
    *(void **)&real_utimensat = resolve("utimensat");
    *(void **)&real_link = resolve("link");
    *(void **)&real_linkat = resolve("linkat");
    *(void **)&real_syscall = resolve("syscall");

    /* Room for "<slot>/<longest name>" so building a target never truncates. */
    if (!absolute_env("CBACTIONS_PRELOAD_ROOT", root_path, sizeof root_path))
        return;
    if (!absolute_env("CBACTIONS_PRELOAD_SLOT_DIR", slot_dir, sizeof slot_dir - LONGEST_NAME - 1))
        return;
    slot_len = strlen(slot_dir);
    while (slot_len > 1 && slot_dir[slot_len - 1] == '/')
        slot_dir[--slot_len] = '\0';
    if (slot_len == 1) /* slot "/" : "/" + name, not "//" + name */
        slot_len = 0;
    enabled = 1;
}

/* Returns 0 only for a call made by this thread while it is still initialising. */
static int ensure_init(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE)
        return 1;
    if (in_preload)
        return 0;
    int expected = INIT_NONE;
    if (__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        int saved = errno;
        in_preload = 1;
        do_init();
        in_preload = 0;
        errno = saved;
        __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
        return 1;
    }
    /* Another thread is initialising (only possible before main, from another library's
       constructor); its dlsym calls are short. */
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
        sched_yield();
    return 1;
}

__attribute__((constructor)) static void preload_constructor(void)
{
    ensure_init();
}

static int is_redirected_name(const char *base)
{
    if (base[0] != '.')
        return 0;
    for (size_t i = 0; i < sizeof redirected_names / sizeof redirected_names[0]; i++)
        if (strcmp(base, redirected_names[i]) == 0)
            return 1;
    return 0;
}

/* dev/ino of what the kernel resolves (dirfd, path) to, following symlinks. */
static int identity(int dirfd, const char *path, dev_t *dev, ino_t *ino)
{
    struct stat64 st;
    int rc;
    if (real_fstatat64 != NULL)
        rc = real_fstatat64(dirfd, path, &st, 0);
    else if (real___fxstatat64 != NULL)
        rc = real___fxstatat64(LEGACY_STAT_VER, dirfd, path, &st, 0);
    else
        return -1;
    if (rc != 0)
        return -1;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

/*
 * The slow path, taken only when the last component is a redirected name: is the
 * directory part the root? Kept out of line so hooks that do not match (nearly all
 * calls) never touch the PATH_MAX buffer here.
 */
__attribute__((noinline)) static int directory_is_root(int dirfd, const char *path, size_t dir_len)
{
    char dir[PATH_MAX];
    if (dir_len == 0) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        if (dir_len >= sizeof dir)
            return 0;
        memcpy(dir, path, dir_len);
        dir[dir_len] = '\0';
    }
    dev_t dir_dev, root_dev;
    ino_t dir_ino, root_ino;
    /* The root is looked up on every match (not cached) so a root that is created after
       this process started, or replaced, is still recognised. */
    if (identity(dirfd, dir, &dir_dev, &dir_ino) != 0)
        return 0;
    if (identity(AT_FDCWD, root_path, &root_dev, &root_ino) != 0)
        return 0;
    return dir_dev == root_dev && dir_ino == root_ino;
}

/*
 * Returns the path the real function should see: `out` (holding "<slot>/<name>") when
 * (dirfd, path) names a redirected file in the root, else `path` unchanged. errno is
 * left exactly as the caller had it. `path` is not declared nonnull on purpose: the
 * kernel answers EFAULT for NULL, so NULL is passed through for it to do so.
 */
__attribute__((noinline)) static const char *redirect(int dirfd, const char *path, char *out)
{
    if (path == NULL || !ensure_init() || !enabled || in_preload)
        return path;
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    /* A trailing slash ("<root>/.runner/") names a directory: never one of our files. */
    if (!is_redirected_name(base))
        return path;

    int saved = errno;
    in_preload = 1;
    int match = directory_is_root(dirfd, path, (size_t)(base - path));
    in_preload = 0;
    errno = saved;
    if (!match)
        return path;

    size_t base_len = strlen(base);
    memcpy(out, slot_dir, slot_len);
    out[slot_len] = '/';
    memcpy(out + slot_len + 1, base, base_len + 1);
    return out;
}

#define NEEDS_MODE(flags) (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE)

/* Fail like a kernel without the call, rather than jump through a NULL pointer. */
#define REQUIRE_REAL(fn, failure)                                                                  \
    do {                                                                                           \
        if ((fn) == NULL) {                                                                        \
            errno = ENOSYS;                                                                        \
            return failure;                                                                        \
        }                                                                                          \
    } while (0)

/* ---- open family ---- */

EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (NEEDS_MODE(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_open, -1);
    return real_open(p, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (NEEDS_MODE(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_open64, -1);
    return real_open64(p, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (NEEDS_MODE(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX];
    const char *p = redirect(dirfd, path, buf);
    REQUIRE_REAL(real_openat, -1);
    return real_openat(p == path ? dirfd : AT_FDCWD, p, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (NEEDS_MODE(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX];
    const char *p = redirect(dirfd, path, buf);
    REQUIRE_REAL(real_openat64, -1);
    return real_openat64(p == path ? dirfd : AT_FDCWD, p, flags, mode);
}

/* _FORTIFY_SOURCE builds call these when the flags are not a compile-time constant. */
EXPORT int __open_2(const char *path, int flags)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real___open_2, -1);
    return real___open_2(p, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real___open64_2, -1);
    return real___open64_2(p, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    char buf[PATH_MAX];
    const char *p = redirect(dirfd, path, buf);
    REQUIRE_REAL(real___openat_2, -1);
    return real___openat_2(p == path ? dirfd : AT_FDCWD, p, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    char buf[PATH_MAX];
    const char *p = redirect(dirfd, path, buf);
    REQUIRE_REAL(real___openat64_2, -1);
    return real___openat64_2(p == path ? dirfd : AT_FDCWD, p, flags);
}

EXPORT int creat(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_creat, -1);
    return real_creat(p, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_creat64, -1);
    return real_creat64(p, mode);
}

/* glibc's fopen opens through its internal __open, which no hook sees. */
EXPORT FILE *fopen(const char *path, const char *mode)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_fopen, NULL);
    return real_fopen(p, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
    char buf[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, buf);
    REQUIRE_REAL(real_fopen64, NULL);
    return real_fopen64(p, mode);
}

/* ---- stat family, glibc >= 2.33 entry points ---- */

EXPORT int stat(const char *path, struct stat *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_stat, -1);
    return real_stat(p, buf);
}

EXPORT int stat64(const char *path, struct stat64 *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_stat64, -1);
    return real_stat64(p, buf);
}

EXPORT int lstat(const char *path, struct stat *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_lstat, -1);
    return real_lstat(p, buf);
}

EXPORT int lstat64(const char *path, struct stat64 *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_lstat64, -1);
    return real_lstat64(p, buf);
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *buf, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_fstatat, -1);
    return real_fstatat(p == path ? dirfd : AT_FDCWD, p, buf, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_fstatat64, -1);
    return real_fstatat64(p == path ? dirfd : AT_FDCWD, p, buf, flags);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_statx, -1);
    return real_statx(p == path ? dirfd : AT_FDCWD, p, flags, mask, buf);
}

/* ---- stat family, pre-2.33 entry points (what .NET's System.Native imports) ---- */

EXPORT int __xstat(int ver, const char *path, struct stat *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real___xstat, -1);
    return real___xstat(ver, p, buf);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real___xstat64, -1);
    return real___xstat64(ver, p, buf);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real___lxstat, -1);
    return real___lxstat(ver, p, buf);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *buf)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real___lxstat64, -1);
    return real___lxstat64(ver, p, buf);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real___fxstatat, -1);
    return real___fxstatat(ver, p == path ? dirfd : AT_FDCWD, p, buf, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real___fxstatat64, -1);
    return real___fxstatat64(ver, p == path ? dirfd : AT_FDCWD, p, buf, flags);
}

/* ---- access, unlink, rename, truncate, chmod ---- */

EXPORT int access(const char *path, int mode)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_access, -1);
    return real_access(p, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_faccessat, -1);
    return real_faccessat(p == path ? dirfd : AT_FDCWD, p, mode, flags);
}

EXPORT int unlink(const char *path)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_unlink, -1);
    return real_unlink(p);
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_unlinkat, -1);
    return real_unlinkat(p == path ? dirfd : AT_FDCWD, p, flags);
}

/* glibc's remove calls its internal __unlink, which the unlink hook does not see. */
EXPORT int remove(const char *path)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_remove, -1);
    return real_remove(p);
}

/*
 * Each side is redirected on its own, so "write <root>/.runner.tmp, rename it to
 * <root>/.runner" moves the temp file into the slot. That works when the slot directory
 * is on the root's filesystem; across filesystems the kernel answers EXDEV, which is
 * passed on unchanged (actions/runner writes these files in place, it does not rename).
 */
EXPORT int rename(const char *from, const char *to)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    const char *p1 = redirect(AT_FDCWD, from, b1);
    const char *p2 = redirect(AT_FDCWD, to, b2);
    REQUIRE_REAL(real_rename, -1);
    return real_rename(p1, p2);
}

EXPORT int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    const char *p1 = redirect(fromfd, from, b1);
    const char *p2 = redirect(tofd, to, b2);
    REQUIRE_REAL(real_renameat, -1);
    return real_renameat(p1 == from ? fromfd : AT_FDCWD, p1, p2 == to ? tofd : AT_FDCWD, p2);
}

EXPORT int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    const char *p1 = redirect(fromfd, from, b1);
    const char *p2 = redirect(tofd, to, b2);
    REQUIRE_REAL(real_renameat2, -1);
    return real_renameat2(p1 == from ? fromfd : AT_FDCWD, p1, p2 == to ? tofd : AT_FDCWD, p2,
                          flags);
}

EXPORT int truncate(const char *path, off_t length)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_truncate, -1);
    return real_truncate(p, length);
}

EXPORT int truncate64(const char *path, off64_t length)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_truncate64, -1);
    return real_truncate64(p, length);
}

/* .NET's File.SetAttributes (ConfigurationStore marks .runner/.credentials Hidden) may
   chmod the file it just wrote. */
EXPORT int chmod(const char *path, mode_t mode)
{
    char b[PATH_MAX];
    const char *p = redirect(AT_FDCWD, path, b);
    REQUIRE_REAL(real_chmod, -1);
    return real_chmod(p, mode);
}

/* .NET's File.SetLastWriteTime/SetLastAccessTime/SetCreationTime: utimensat on the
   path (libSystem.Native imports it). A NULL path means "the file dirfd is open on". */
EXPORT int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
{
    char b[PATH_MAX];
    const char *p = redirect(dirfd, path, b);
    REQUIRE_REAL(real_utimensat, -1);
    return real_utimensat(p == path ? dirfd : AT_FDCWD, p, times, flags);
}

/* libSystem.Native imports link (File.Move's no-overwrite fallback in some .NET
   versions); a new name made in the shared root would be shared by every listener. Each
   side is redirected on its own, as for rename. */
EXPORT int link(const char *from, const char *to)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    const char *p1 = redirect(AT_FDCWD, from, b1);
    const char *p2 = redirect(AT_FDCWD, to, b2);
    REQUIRE_REAL(real_link, -1);
    return real_link(p1, p2);
}

EXPORT int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    const char *p1 = redirect(fromfd, from, b1);
    const char *p2 = redirect(tofd, to, b2);
    REQUIRE_REAL(real_linkat, -1);
    return real_linkat(p1 == from ? fromfd : AT_FDCWD, p1, p2 == to ? tofd : AT_FDCWD, p2, flags);
}

/* ---- syscall(): libuv (Node) issues statx through it, bypassing glibc's statx ---- */

/* Where a path-taking syscall keeps its dirfd (-1: none, relative to cwd) and path. */
struct path_arg {
    int dirfd_index;
    int path_index;
};

static int path_args(long number, struct path_arg *first, struct path_arg *second)
{
    second->path_index = -1;
    switch (number) {
#ifdef SYS_statx
    case SYS_statx:
#endif
#ifdef SYS_openat
    case SYS_openat:
#endif
#ifdef SYS_openat2
    case SYS_openat2:
#endif
#ifdef SYS_newfstatat
    case SYS_newfstatat:
#endif
#ifdef SYS_faccessat
    case SYS_faccessat:
#endif
#ifdef SYS_faccessat2
    case SYS_faccessat2:
#endif
#ifdef SYS_unlinkat
    case SYS_unlinkat:
#endif
        first->dirfd_index = 0;
        first->path_index = 1;
        return 1;
#ifdef SYS_open
    case SYS_open:
#endif
#ifdef SYS_creat
    case SYS_creat:
#endif
#ifdef SYS_stat
    case SYS_stat:
#endif
#ifdef SYS_lstat
    case SYS_lstat:
#endif
#ifdef SYS_access
    case SYS_access:
#endif
#ifdef SYS_unlink
    case SYS_unlink:
#endif
#ifdef SYS_truncate
    case SYS_truncate:
#endif
#ifdef SYS_chmod
    case SYS_chmod:
#endif
        first->dirfd_index = -1;
        first->path_index = 0;
        return 1;
#ifdef SYS_rename
    case SYS_rename:
        first->dirfd_index = -1;
        first->path_index = 0;
        second->dirfd_index = -1;
        second->path_index = 1;
        return 1;
#endif
#ifdef SYS_renameat
    case SYS_renameat:
#endif
#ifdef SYS_renameat2
    case SYS_renameat2:
#endif
        first->dirfd_index = 0;
        first->path_index = 1;
        second->dirfd_index = 2;
        second->path_index = 3;
        return 1;
    default:
        return 0;
    }
}

static void redirect_arg(long *args, const struct path_arg *arg, char *buf)
{
    if (arg->path_index < 0)
        return;
    const char *path = (const char *)(uintptr_t)args[arg->path_index];
    int dirfd = arg->dirfd_index < 0 ? AT_FDCWD : (int)args[arg->dirfd_index];
    const char *p = redirect(dirfd, path, buf);
    if (p != path) {
        args[arg->path_index] = (long)(uintptr_t)p;
        if (arg->dirfd_index >= 0)
            args[arg->dirfd_index] = AT_FDCWD;
    }
}

/* Out of line: the PATH_MAX buffers are only on the stack for path-taking syscalls, not
   for the futex/gettid calls that dominate syscall() traffic. */
__attribute__((noinline)) static long syscall_with_paths(long number, long *args,
                                                        const struct path_arg *first,
                                                        const struct path_arg *second)
{
    char b1[PATH_MAX], b2[PATH_MAX];
    redirect_arg(args, first, b1);
    redirect_arg(args, second, b2);
    return real_syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]);
}

EXPORT long syscall(long number, ...)
{
    /* The syscall ABI passes at most six register-sized arguments; reading six from the
       va_list is how syscall() itself forwards them (extra ones are ignored). */
    long args[6];
    va_list ap;
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        args[i] = va_arg(ap, long);
    va_end(ap);

    if (real_syscall == NULL || __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE) {
        ensure_init();
        REQUIRE_REAL(real_syscall, -1);
    }
    struct path_arg first, second;
    if (enabled && path_args(number, &first, &second))
        return syscall_with_paths(number, args, &first, &second);
    return real_syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]);
}
