/* PyC runtime: the few helpers generated models share. Plain C11, no dependencies but libc/libm. */
#ifndef PYC_RUNTIME_H
#define PYC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define PYC_EXPORT __declspec(dllexport)
#else
#define PYC_EXPORT __attribute__((visibility("default")))
#endif

/* Status codes returned by every entry point (0 = success). */
enum pyc_status {
  PYC_STATUS_OK = 0,
  PYC_STATUS_INVALID_ARGUMENT = 1,
  PYC_STATUS_OUT_OF_MEMORY = 2,
  PYC_STATUS_WEIGHTS_UNREADABLE = 3,
  PYC_STATUS_WEIGHTS_MISMATCH = 4,
  PYC_STATUS_INDEX_OUT_OF_RANGE = 5
};

/* Element type codes used by the model metadata functions. */
enum pyc_dtype {
  PYC_DTYPE_F32 = 1, PYC_DTYPE_F64 = 2, PYC_DTYPE_F16 = 3, PYC_DTYPE_I8 = 4, PYC_DTYPE_I16 = 5,
  PYC_DTYPE_I32 = 6, PYC_DTYPE_I64 = 7, PYC_DTYPE_U8 = 8, PYC_DTYPE_BOOL = 9, PYC_DTYPE_U16 = 10,
  PYC_DTYPE_U32 = 11, PYC_DTYPE_U64 = 12, PYC_DTYPE_BF16 = 13
};

/* The text of a status code. Exported from every model library (the codes are the same for
 * all of them); each model also exports its own NAME_status_string. Everything else here is
 * hidden (-fvisibility=hidden): every library keeps a private copy, so models linked into one
 * program never clash on the runtime. */
PYC_EXPORT const char* pyc_status_string(int status);
const char* pyc_status_text(int status); /* the hidden implementation the models call */
void* pyc_aligned_alloc(size_t bytes);
void pyc_aligned_free(void* ptr);
/* A weights buffer: pyc_aligned_alloc's, or from 4 MiB on (Linux) 2 MiB-aligned with the huge-page
 * advice (MADV_HUGEPAGE); freed with pyc_aligned_free. */
void* pyc_weights_alloc(size_t bytes);
/* Reads exactly `expected` bytes from `path` into a new aligned buffer and checks the checksum. */
int pyc_load_weights(const char* path, size_t expected, uint64_t checksum, unsigned char** out);
uint64_t pyc_weights_checksum(const unsigned char* data, size_t bytes);

/* Threads. A kernel loop whose iterations write disjoint outputs is marked PYC_PARALLEL_FOR;
 * built with OpenMP, its iterations are handed out to the run's team in shrinking chunks
 * (guided: few hand-outs for thousands of small iterations, and a thread the OS preempts
 * delays only its last chunk), and results are the same for every thread count (no
 * iteration's sum depends on who runs it); built without,
 * the mark is empty and the library runs serially. A run's team size is fixed when it starts
 * (`pyc_run_begin`) as the calling thread's OpenMP thread count, and the caller's own setting
 * is restored when it ends (no state of ours lives in thread-local storage, which the JIT
 * loader cannot link). */
#if defined(_OPENMP)
#define PYC_PARALLEL_FOR _Pragma("omp parallel for schedule(guided)")
#else
#define PYC_PARALLEL_FOR
#endif
/* The same contract for a loop of equal tasks that streams memory (a GEMV reading its weights
 * once): each thread takes one contiguous range of them, its share of the bytes (guided
 * hand-outs would let the thread that starts first take what a thread still waking up would
 * have read: measured, a 2-thread GEMV then often ran on one thread). */
#if defined(_OPENMP)
#define PYC_PARALLEL_FOR_STATIC _Pragma("omp parallel for schedule(static)")
#else
#define PYC_PARALLEL_FOR_STATIC
#endif
/* The threads a run may use: PYC_NUM_THREADS when set to a positive integer, else the build's
 * default (`pyc build --threads`; 0 = every core this process may use). */
int pyc_threads_wanted(int build_default);
/* Starts a run of `wanted` threads: the cores are shared among the runs of this library in
 * flight at once (callers' own threads do not oversubscribe the machine), and a run inside
 * another OpenMP team stays on its thread. Returns what pyc_run_end restores. */
int pyc_run_begin(int wanted);
void pyc_run_end(int saved);

/* An adaptive team (issue 13). On a host whose cores other processes keep busy, a team thread
 * the OS has descheduled holds every parallel loop's closing barrier (OpenMP cannot hand its
 * unclaimed chunks back to the caller, as onnxruntime's pool does): a 2-thread run then took
 * several times its 1-thread time, and on a many-core server under partial load a team of
 * half or a quarter of the cores beats both the full team and one thread. So each context
 * times its own runs and walks a ladder of team sizes: level 0 = the full team F that
 * pyc_run_begin would form, level 1 = F/2, level 2 = F/4, ... down to one thread (F >> level,
 * at least 1; F=2: {2, 1}, F=6: {6, 3, 1}, F=16: {16, 8, 4, 2, 1}; at most PYC_TEAM_LEVELS
 * levels). It keeps a running mean per level and uses one level, probing a neighbouring one
 * now and then (PYC_TEAM_PROBE_RUNS runs): the level below, or the level above when the last
 * probe below lost, the last move went up, or at the bottom. A probed level that beats the
 * current one by 5% is moved to, one level at a time (a move with a level beyond it probes that
 * one PYC_TEAM_MIN_INTERVAL runs later, so a load that moved far is followed within tens of
 * runs). Probes come at most every few seconds unless they would take over 1/16 of the time; at
 * once (the level below) when the current level's time doubles, and if the level below wins
 * that probe the level left is re-checked PYC_TEAM_MIN_INTERVAL runs later: a transient spike
 * costs a few runs, not the ~60 the spike-inflated mean's spacing gave. So the choice follows
 * the load both ways. A run after
 * an idle gap (a context's first run, or one starting PYC_TEAM_IDLE_MS after the previous one
 * ended) is not counted: its sleeping team threads, cold caches and first-touch page faults (an MLP's 24 MB of
 * weights) cost it several warm runs' time whatever the load, which made the full team look
 * slow on a quiet host, one thread won the next probe, and the probes' cost spacing kept it
 * there for a thousand runs. Sporadic runs (each after a gap) therefore keep the full team.
 * Runs of varying shapes count only where their work is typical (pyc_team_record_work).
 * Results do not change: every parallel loop writes disjoint outputs, so a run
 * is bitwise the same at every team size (PYC_PARALLEL_FOR). Off (a fixed team, e.g. to time
 * the full team) with PYC_ADAPTIVE_THREADS=0. The state lives in the context, which one run
 * uses at a time: no locks. pyc_team_arm / pyc_team_record are the pure decision (tested with
 * made-up timings, tests/c/team_driver.c). The fields and functions say "arm" for a level. */
#define PYC_TEAM_PROBE_RUNS 2
#define PYC_TEAM_MIN_INTERVAL 4    /* runs between probes after a switch */
#define PYC_TEAM_MAX_INTERVAL 256  /* ... at most, doubling while the choice holds */
#define PYC_TEAM_MAX_PROBE_MS 4000.0  /* and at most this long apart (a slow model re-probes) */
#define PYC_TEAM_IDLE_MS 10.0  /* a gap between runs this long lets the team's threads sleep */
#define PYC_TEAM_LEVELS 8  /* team sizes F, F/2, ..., F/128 at most (a larger F stops above 1) */
/* A probe's level keeps half its old mean when that mean is fresh, less the older it is: the
 * weight halves for every PYC_TEAM_STALE_MS of runs since the level last ran (pyc_runtime.c,
 * end_probe). A load that sent a 37 ms model to one thread and left seconds ago no longer
 * holds the full team's loaded mean against its fast probes. */
#define PYC_TEAM_STALE_MS 1000.0
typedef struct pyc_team {
  int off;          /* 1: a fixed team (PYC_ADAPTIVE_THREADS=0) */
  int levels;       /* the ladder's levels, 2..PYC_TEAM_LEVELS (0: not set, read as 2) */
  int arm;          /* the level in use: 0 = the full team F, k = F >> k threads */
  int probe_arm;    /* the level the probe in flight tries (a neighbour of `arm`) */
  int up;           /* 1: the next probe goes up the ladder (the last move did, or the last
                     * probe below lost), 0: down */
  int onward;       /* 1: just moved with a level beyond; probe it MIN_INTERVAL runs on */
  int probe_left;   /* runs left in a probe of `probe_arm` (0: none) */
  int since;        /* runs at `arm` since the last probe ended */
  int interval;     /* runs at `arm` between probes (0: PYC_TEAM_MIN_INTERVAL) */
  double ms[PYC_TEAM_LEVELS];  /* each level's milliseconds per run: running mean (0: not yet) */
  double probe_ms;  /* the sum of this probe's runs so far */
  double settled;   /* ms[arm] when the last probe ended (a doubling probes at once) */
  int spike;        /* 1: the probe in flight was started by the level's mean doubling */
  int recheck;      /* 1: left a level on its doubling; re-probe it MIN_INTERVAL runs on */
  int warm;         /* 0: the next run follows an idle gap and is not counted (above) */
  double last_end;  /* when the previous run ended, in milliseconds (0: none yet) */
  int used;         /* the level of the run in flight, -1: not timed (a team of one either way) */
  double started;   /* its start, in milliseconds */
  double log_work;  /* runs of varying shapes: the running mean of log(work), the band's centre */
  double ref_work;  /* ... and the log(work) their times are scaled to */
  int shaped;       /* 1: a run of varying shape has been recorded */
  double clock;     /* the milliseconds of the runs recorded so far (a level's mean's age) */
  double seen[PYC_TEAM_LEVELS];  /* `clock` when each level's mean last took a run */
} pyc_team;
/* The ladder's length for a full team of `threads` (2 -> 2, 6 -> 3, 16 -> 5, at most
 * PYC_TEAM_LEVELS), and setting it (pyc_run_begin_team_work does, for each run's full team). */
int pyc_team_levels(int threads);
void pyc_team_set_levels(pyc_team* team, int levels);
/* The level the next run uses. */
int pyc_team_arm(const pyc_team* team);
/* A run at level `arm` took `ms` milliseconds: the running means, the probes and the choice. */
void pyc_team_record(pyc_team* team, int arm, double ms);
/* 0 when PYC_ADAPTIVE_THREADS is 0 (read when a model is created), else 1. */
int pyc_team_adaptive(void);
/* pyc_run_begin with the context's team choosing the level; pyc_run_end_team times the run. */
int pyc_run_begin_team(pyc_team* team, int wanted);
void pyc_run_end_team(pyc_team* team, int saved);
/* Runs whose shapes vary (a model of symbolic dims) compare the arms on runs of typical work
 * only: a run of `work` units (the product of its dims) counts where its work is within
 * PYC_TEAM_WORK_BAND of the runs' running geometric mean, its time scaled to that mean; other
 * runs follow the choice uncounted. The band keeps the scaling's error small (a run's fixed
 * costs, work that is not linear in a dim: a tiny run scaled up 100x would read as a spike). */
#define PYC_TEAM_WORK_BAND 1.5
#define PYC_TEAM_WORK_MOVED 4.0  /* the band's centre this far from the reference: start afresh */
/* whether a run of `work` is typical (always, for a static model's work 0) */
int pyc_team_typical(const pyc_team* team, double work);
/* the arm a run of `work` uses: an atypical run stays on the arm in use, probes or not */
int pyc_team_arm_work(const pyc_team* team, double work);
void pyc_team_record_work(pyc_team* team, int arm, double ms, double work);
int pyc_run_begin_team_work(pyc_team* team, int wanted, double work);
void pyc_run_end_team_work(pyc_team* team, int saved, double work);

#endif
