// Single-steps a command and every process it forks, and writes the
// address of each instruction of one ELF's text the first time any of them
// executes it, in that order (one "0x<ELF vaddr>" per line). A process that
// execs another program is let go; when the command exits, the processes
// it left running are let go too, unless ORDER_TRACE_WAIT is set in the
// environment: then they are traced until they exit (a detached
// container's monitor, through its steady state to its end).
//
// bench/symbol-order.py builds and runs this to find the functions a start
// runs, in the order it runs them; the linker then lays them out together
// (crates/cli/order/). Single-stepping, not sampling: a function that runs
// once, for one instruction, still touches its page.
//
//   order-trace OUT ELF TEXT_OFFSET TEXT_VADDR TEXT_SIZE -- COMMAND...
//   order-trace OUT ELF TEXT_OFFSET TEXT_VADDR TEXT_SIZE --attach SECONDS PID...
//
// The second form attaches to running processes for SECONDS and lets them
// go after: the code a long-lived process runs in its steady state (a
// detached container's monitor), which the linker can then put first.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

struct proc { pid_t pid; uint64_t lo, hi, bias; int ours; int known; int waiting; int started; };
static struct proc procs[4096];
static int nprocs;
static const char *target;
static struct stat target_st;
static unsigned char *seen;
static uint64_t seen_len;
static FILE *out;
static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed = 1; }

static struct proc *find(pid_t pid) {
    for (int i = 0; i < nprocs; i++) if (procs[i].pid == pid) return &procs[i];
    if (nprocs == 4096) { fprintf(stderr, "too many\n"); exit(1); }
    memset(&procs[nprocs], 0, sizeof procs[0]); procs[nprocs].pid = pid;
    return &procs[nprocs++];
}

// text mapping of the target in pid: vaddr range and (runtime - ELF vaddr) bias.
// The target is known by its device and inode, not its path: hako runs its
// monitor from a read-only bind mount of itself, which maps shows as "/".
static void load_maps(struct proc *p, uint64_t text_off, uint64_t text_vaddr) {
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", p->pid);
    FILE *f = fopen(path, "r");
    p->ours = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino; unsigned maj, min; char perm[8];
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perm, &off, &maj, &min, &ino) != 7) continue;
        if (perm[2] != 'x' || ino != target_st.st_ino || maj != major(target_st.st_dev) ||
            min != minor(target_st.st_dev)) continue;
        p->lo = lo; p->hi = hi; p->bias = lo - off - (text_vaddr - text_off); p->ours = 1;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: trace OUT ELF TEXT_OFF TEXT_VADDR TEXT_SIZE -- cmd...\n"); return 2; }
    out = fopen(argv[1], "w"); target = argv[2];
    if (stat(target, &target_st) != 0) { perror(target); return 2; }
    uint64_t text_off = strtoull(argv[3], 0, 0), text_vaddr = strtoull(argv[4], 0, 0);
    seen_len = strtoull(argv[5], 0, 0);
    seen = calloc(seen_len, 1);
    const long opts = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
    int live = 0, ending = 0, rc = 0, st; long steps = 0;
    int wait_all = getenv("ORDER_TRACE_WAIT") != NULL;
    pid_t child = -1;
    if (!strcmp(argv[6], "--attach")) {
        if (argc < 9) { fprintf(stderr, "usage: trace OUT ELF TEXT_OFF TEXT_VADDR TEXT_SIZE --attach SECONDS PID...\n"); return 2; }
        struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_alarm;
        sigaction(SIGALRM, &sa, 0);  // no SA_RESTART: waitpid returns EINTR
        for (int i = 8; i < argc; i++) {
            pid_t pid = atoi(argv[i]);
            if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) { perror("attach"); return 1; }
            waitpid(pid, &st, __WALL);  // the attach's SIGSTOP
            ptrace(PTRACE_SETOPTIONS, pid, 0, opts);
            struct proc *p = find(pid); p->known = 1; p->started = 1;
            load_maps(p, text_off, text_vaddr);
            live++;
            ptrace(p->ours ? PTRACE_SINGLESTEP : PTRACE_CONT, pid, 0, 0);
        }
        alarm(atoi(argv[7]));
    } else {
        char **cmd = argv + 7;
        child = fork();
        if (child == 0) {
            ptrace(PTRACE_TRACEME, 0, 0, 0);
            raise(SIGSTOP);
            execvp(cmd[0], cmd);
            _exit(127);
        }
        waitpid(child, &st, 0);
        ptrace(PTRACE_SETOPTIONS, child, 0, opts);
        struct proc *root = find(child); root->known = 1; root->started = 1;
        ptrace(PTRACE_CONT, child, 0, 0);  // run to exec (traced exec stops with event)
        live = 1;
    }
    while (live > 0) {
        if (alarmed && !ending) {
            // --attach's time is up: stop everything to let it go.
            ending = 1;
            for (int i = 0; i < nprocs; i++)
                if (procs[i].pid > 0) kill(procs[i].pid, SIGSTOP);
        }
        pid_t pid = waitpid(-1, &st, __WALL);
        if (pid < 0) { if (errno == EINTR) continue; break; }
        struct proc *p = find(pid);
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (pid == child) {
                rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            if (pid == child && !wait_all) {
                ending = 1;
                // Stop what is left (it may be blocked in a system call,
                // where no single-step stop comes) so it can be let go.
                for (int i = 0; i < nprocs; i++)
                    if (procs[i].pid > 0 && procs[i].pid != pid) kill(procs[i].pid, SIGSTOP);
            }
            p->pid = -1; live--; continue;
        }
        if (!WIFSTOPPED(st)) continue;
        int sig = WSTOPSIG(st), ev = st >> 16, inject = 0;
        if (ending) {
            // The command is done; let what it left running go at its next
            // stop, with no single-step SIGTRAP pending (a tracer that just
            // exits would have the kernel deliver it, killing the process).
            if (ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK || ev == PTRACE_EVENT_CLONE) live++;
            ptrace(PTRACE_DETACH, pid, 0, (sig == SIGTRAP || ev || sig == SIGSTOP) ? 0 : sig);
            kill(pid, SIGCONT);  // drops our SIGSTOP if it is still pending
            p->pid = -1; live--; continue;
        }
        if (ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK || ev == PTRACE_EVENT_CLONE) {
            unsigned long np; ptrace(PTRACE_GETEVENTMSG, pid, 0, &np);
            struct proc *c = find((pid_t)np);
            c->lo = p->lo; c->hi = p->hi; c->bias = p->bias; c->ours = p->ours; c->known = 1;
            live++;
            if (c->waiting) { c->waiting = 0; c->started = 1; ptrace(c->ours ? PTRACE_SINGLESTEP : PTRACE_CONT, c->pid, 0, 0); }
        } else if (ev == PTRACE_EVENT_EXEC) {
            load_maps(p, text_off, text_vaddr);
            if (!p->ours) { ptrace(PTRACE_DETACH, pid, 0, 0); p->pid = -1; live--; continue; }
        } else if (!p->known) {
            // a new child's first stop, before its parent's event: wait for it
            p->waiting = 1; continue;
        } else if (sig == SIGSTOP && !p->started) {
            // a new child's first stop (its parent's event came first)
        } else if (sig != SIGTRAP) {
            inject = sig;
        }
        p->started = 1;
        if (p->ours == 1) {
            struct user_regs_struct r;
            if (ptrace(PTRACE_GETREGS, pid, 0, &r) == 0 && r.rip >= p->lo && r.rip < p->hi) {
                uint64_t v = r.rip - p->bias;
                uint64_t i = v - text_vaddr;
                if (i < seen_len && !seen[i]) { seen[i] = 1; fprintf(out, "0x%lx\n", (unsigned long)v); }
            }
            steps++;
            ptrace(PTRACE_SINGLESTEP, pid, 0, inject);
        } else {
            ptrace(PTRACE_CONT, pid, 0, inject);
        }
    }
    fclose(out);
    fprintf(stderr, "trace: %ld steps, exit %d\n", steps, rc);
    return rc;
}
