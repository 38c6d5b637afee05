/* PyC runtime helpers: aligned allocation and verified weight loading. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE under -std=c11 */
#endif
#include "pyc_runtime.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define PYC_ALIGNMENT 64

const char* pyc_status_text(int status) {
  switch (status) {
    case PYC_STATUS_OK: return "ok";
    case PYC_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case PYC_STATUS_OUT_OF_MEMORY: return "out of memory";
    case PYC_STATUS_WEIGHTS_UNREADABLE: return "weights file missing or unreadable";
    case PYC_STATUS_WEIGHTS_MISMATCH: return "weights file has the wrong size or checksum";
    case PYC_STATUS_INDEX_OUT_OF_RANGE: return "an index input is out of range";
    default: return "unknown status";
  }
}

const char* pyc_status_string(int status) { return pyc_status_text(status); }

void* pyc_aligned_alloc(size_t bytes) {
  size_t rounded = (bytes + PYC_ALIGNMENT - 1) / PYC_ALIGNMENT * PYC_ALIGNMENT;
  return aligned_alloc(PYC_ALIGNMENT, rounded ? rounded : PYC_ALIGNMENT);
}

/* Weights of at least PYC_HUGE_BYTES are placed on 2 MiB pages where Linux's transparent huge
 * pages allow it (`madvise` mode included): a run streams every weight byte once, and with 4 KiB
 * pages each 4 KiB of it costs a TLB miss (ResNet-50's 138 MiB: ~35,000 a run, far beyond the
 * TLB's reach). Asked before the first touch, so the pages fault in whole; the contents are the
 * same. The arena keeps 4 KiB pages: it is reused by every kernel (ResNet-50's 8.6 MiB stays
 * within the L2 TLB's reach) and its untouched tail pages are not made resident. */
#define PYC_HUGE_PAGE ((size_t)2 << 20)
#define PYC_HUGE_BYTES ((size_t)4 << 20)

void* pyc_weights_alloc(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= PYC_HUGE_BYTES) {
    size_t huge = (bytes + PYC_HUGE_PAGE - 1) / PYC_HUGE_PAGE * PYC_HUGE_PAGE;
    void* ptr = aligned_alloc(PYC_HUGE_PAGE, huge);
    if (ptr != NULL) (void)madvise(ptr, huge, MADV_HUGEPAGE);  /* advice only: may be refused */
    return ptr;
  }
#endif
  return pyc_aligned_alloc(bytes);
}

void pyc_aligned_free(void* ptr) { free(ptr); }

uint64_t pyc_weights_checksum(const unsigned char* data, size_t bytes) {
  /* position-weighted sum of little-endian u32 words, mod 2^64 (matches pyc_cli.codegen.weights) */
  uint64_t sum = 0;
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    uint32_t word = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                    ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24);
    sum += (uint64_t)word * (uint64_t)(i / 4 + 1);
  }
  return sum;
}

int pyc_load_weights(const char* path, size_t expected, uint64_t checksum, unsigned char** out) {
  *out = NULL;
  if (path == NULL) return PYC_STATUS_INVALID_ARGUMENT;
  FILE* file = fopen(path, "rb");
  if (file == NULL) return PYC_STATUS_WEIGHTS_UNREADABLE;
  unsigned char* buffer = pyc_weights_alloc(expected);
  if (buffer == NULL) { fclose(file); return PYC_STATUS_OUT_OF_MEMORY; }
  size_t got = expected ? fread(buffer, 1, expected, file) : 0;
  int extra = fgetc(file);
  fclose(file);
  if (got != expected || extra != EOF || pyc_weights_checksum(buffer, expected) != checksum) {
    pyc_aligned_free(buffer);
    return PYC_STATUS_WEIGHTS_MISMATCH;
  }
  *out = buffer;
  return PYC_STATUS_OK;
}

#if defined(__clang__) && __clang_major__ < 15 && (defined(__x86_64__) || defined(__i386__))
/* Clang 14 converts __fp16 (the generated code's float16) through helper functions: float <->
 * float16 on x86 CPUs without F16C through compiler-rt's, which GCC's runtime library (what
 * clang links on Linux) lacks, and double -> float16 through __truncdfhf2, which libgcc 12 has
 * with another calling convention (float16 in an SSE register, where clang 14 reads an integer
 * register: garbage). All three are defined here, hidden in each model library, rounding to
 * nearest even as the hardware does. Clang 15 and later use libgcc's convention. */
float __gnu_h2f_ieee(uint16_t h);
uint16_t __gnu_f2h_ieee(float f);
uint16_t __truncdfhf2(double x);

float __gnu_h2f_ieee(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else {  /* zero or subnormal: mantissa * 2^-24, exact in float */
    float value = (float)mantissa * 5.9604644775390625e-8f;
    memcpy(&bits, &value, sizeof bits);
    bits |= sign;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t __gnu_f2h_ieee(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000u, magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x47800000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65536, inf: inf */
  uint32_t exponent = magnitude >> 23;
  if (exponent < 113) {  /* below 2^-14: a subnormal float16 (units of 2^-24) or zero */
    if (exponent < 102) return (uint16_t)sign;  /* below 2^-25: rounds to zero */
    uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u, shift = 126 - exponent;
    uint32_t q = significand >> shift, rest = significand & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    q += rest > half || (rest == half && (q & 1u));
    return (uint16_t)(sign | q);
  }
  uint32_t h = (magnitude - (112u << 23)) >> 13, rest = magnitude & 0x1fffu;
  h += rest > 0x1000u || (rest == 0x1000u && (h & 1u));  /* a carry may reach inf: right */
  return (uint16_t)(sign | h);
}

/* `x` rounded to a float whose last bit is odd when inexact: rounding that float to float16
 * gives the correctly rounded float16 of `x` (round to odd keeps the sticky information). */
static float pyc_f32_round_to_odd(double x) {
  float f = (float)x;
  if ((double)f != x && f == f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 1u) == 0) bits = fabs((double)f) > fabs(x) ? bits - 1u : bits + 1u;  /* toward x */
    memcpy(&f, &bits, sizeof bits);
  }
  return f;
}

uint16_t __truncdfhf2(double x) { return __gnu_f2h_ieee(pyc_f32_round_to_odd(x)); }
#endif

static atomic_int runs_in_flight;  /* zero-initialised: static storage */

#if defined(_OPENMP)
#include <unistd.h>
/* libgomp's thread pool does not survive fork: a forked child (multiprocessing's fork start
 * method, a pre-forking server) that opens a team of two waits forever for pool threads the
 * fork did not copy. The process of this runtime's first team is remembered; a run in another
 * (a child forked after a run) stays on its thread. (Neither pthread_atfork, which glibc keeps
 * in a static library, nor a constructor links in the llvmlite JIT.) */
static atomic_long first_team_pid;
static int in_forked_child(void) {
  long pid = (long)getpid();
  long first = 0;
  if (atomic_compare_exchange_strong(&first_team_pid, &first, pid)) return 0;
  return first != pid;
}
#endif

/* the cores this process may use, asked once: the OpenMP runtime asks the kernel for the
 * process's affinity on every call, which a run need not pay for */
static int available_cores(void) {
#if defined(_OPENMP)
  static atomic_int cores;  /* 0 until first asked; every thread that races stores one value */
  int known = atomic_load(&cores);
  if (known == 0) {
    known = omp_get_num_procs();
    atomic_store(&cores, known);
  }
  return known;
#else
  return 1;
#endif
}

int pyc_threads_wanted(int build_default) {
  const char* text = getenv("PYC_NUM_THREADS");
  if (text != NULL && *text != '\0') {
    char* end = NULL;
    long value = strtol(text, &end, 10);
    if (*end == '\0' && value > 0) return value > 1024 ? 1024 : (int)value;
  }
  return build_default > 0 ? build_default : available_cores();
}

/* the team a run of `wanted` threads gets: the cores are shared among the runs in flight
 * (`others` besides this one), and a run inside another OpenMP team stays on its thread */
static int team_size(int wanted, int others) {
  int share = available_cores() / (others + 1);
  int threads = wanted < share ? wanted : share;
#if defined(_OPENMP)
  /* a team of one opens no pool: only a larger team asks whether this is a forked child */
  if (threads > 1 && (omp_in_parallel() || in_forked_child())) threads = 1;
#endif
  return threads > 1 ? threads : 1;
}

/* sets the calling thread's team for this run; returns what pyc_run_end restores */
static int start_team(int threads) {
#if defined(_OPENMP)
  int saved = omp_get_max_threads() * 2 + (omp_get_dynamic() != 0);
  omp_set_num_threads(threads);
  /* a fixed team: the runtime's dynamic adjustment (libgomp: online cores minus the load
   * average) counts this process's own threads as load, and halved a busy model's team */
  omp_set_dynamic(0);
  return saved;
#else
  (void)threads;
  return 1;
#endif
}

int pyc_run_begin(int wanted) {
  int others = atomic_fetch_add(&runs_in_flight, 1);
  return start_team(team_size(wanted, others));
}

void pyc_run_end(int saved) {
  atomic_fetch_sub(&runs_in_flight, 1);
#if defined(_OPENMP)
  omp_set_num_threads(saved / 2);
  omp_set_dynamic(saved % 2);
#else
  (void)saved;
#endif
}

/* ---- the adaptive team (pyc_runtime.h says why) ---- */

/* the levels in use (a zeroed team: the two of a team of two) */
static int ladder(const pyc_team* team) {
  return team->levels >= 2 ? team->levels : 2;
}

int pyc_team_levels(int threads) {
  int levels = 1;
  while (levels < PYC_TEAM_LEVELS && (threads >> levels) >= 1) levels++;
  return levels;
}

void pyc_team_set_levels(pyc_team* team, int levels) {
  if (levels < 2) levels = 2;
  if (levels > PYC_TEAM_LEVELS) levels = PYC_TEAM_LEVELS;
  if (levels == team->levels) return;
  team->levels = levels;
  /* a smaller full team (more runs in flight): the ladder is shorter */
  if (team->arm >= levels) team->arm = levels - 1;
  if (team->probe_left > 0 && team->probe_arm >= levels) {
    team->probe_left = 0;
    team->probe_ms = 0.0;
    team->spike = 0;
  }
  team->onward = team->onward && (team->up ? team->arm > 0 : team->arm < levels - 1);
}

int pyc_team_arm(const pyc_team* team) {
  return team->probe_left > 0 ? team->probe_arm : team->arm;
}

int pyc_team_typical(const pyc_team* team, double work) {
  return work <= 0.0 || !team->shaped || fabs(log(work) - team->log_work) <= log(PYC_TEAM_WORK_BAND);
}

int pyc_team_arm_work(const pyc_team* team, double work) {
  return pyc_team_typical(team, work) ? pyc_team_arm(team) : team->arm;
}

/* the level the next probe tries: a re-check the level above (the one a spike left), else the
 * neighbour in the probes' direction (down the ladder unless the last probe there lost or the
 * last move went up), the only neighbour at either end (a ladder of two: the other level) */
static int next_level(const pyc_team* team) {
  int last = ladder(team) - 1;
  if (team->arm <= 0) return 1;
  if (team->arm >= last || team->recheck) return team->arm - 1;
  return team->up ? team->arm - 1 : team->arm + 1;
}

/* `interval` runs between probes, kept within PYC_TEAM_MAX_PROBE_MS of runs at the level's pace
 * (a load that left is seen within seconds), but never so few that the probes (of the level
 * the next one tries) take more than ~1/16 of the time (a loaded host's full team can be 10x
 * slower than one thread) */
static int spaced(const pyc_team* team, int interval) {
  double arm = team->ms[team->arm];
  double other = team->ms[next_level(team)];
  if (interval < PYC_TEAM_MIN_INTERVAL) interval = PYC_TEAM_MIN_INTERVAL;
  if (arm <= 0.0) return interval;
  double by_time = PYC_TEAM_MAX_PROBE_MS / arm;
  if ((double)interval > by_time) interval = by_time < PYC_TEAM_MIN_INTERVAL ? PYC_TEAM_MIN_INTERVAL : (int)by_time;
  double by_cost = 16.0 * PYC_TEAM_PROBE_RUNS * other / arm;
  if ((double)interval < by_cost) interval = by_cost > 4.0 * PYC_TEAM_MAX_INTERVAL ? 4 * PYC_TEAM_MAX_INTERVAL : (int)by_cost;
  return interval;
}

/* a probe's last run: the probed level's mean moves halfway to the probe's mean (a short probe
 * rarely sees the rare long runs that made the level lose, so its old mean keeps some weight;
 * a load that left still shows within a few probes), further the older that mean is (its
 * weight halves every PYC_TEAM_STALE_MS of runs since the level last ran: a ResNet-50 that a
 * load sent to one thread kept it for 80 runs, 6 s, after the load left, each probe's fast
 * runs halved against the loaded mean and spaced by its cost); move there when it beats the current
 * level's running mean by 5% (no flapping between near-equal levels). A probe that keeps the
 * level doubles the interval (up to PYC_TEAM_MAX_INTERVAL) and turns the probes' direction
 * around (the other neighbour is tried next); a move keeps it (a spike probes at once if the
 * new level goes bad, and a pair of levels that keep trading places is probed ever more
 * rarely); either way it is then spaced by the probes' cost. A move with a level beyond it in
 * the same direction probes that one PYC_TEAM_MIN_INTERVAL runs later ("onward": the ladder is
 * walked a level per few runs when the load moved far; a ladder of two has no such level).
 * Leaving a level on its mean's doubling is the exception: its mean then holds a load spike's
 * runs (a 40 ms run became 150 ms for a few runs), and its spacing would keep the level below
 * for ~60 runs of a model that a spike had left after 3. So the level left is re-checked
 * PYC_TEAM_MIN_INTERVAL runs later: spaced by its pre-spike settled mean, which beat the level
 * below, such a probe costs nothing if the spike is gone (its two runs are faster) and two
 * loaded runs once if not. The interval is kept for either outcome: back up, the probes keep
 * their pre-spike spacing; still below (the load stayed), the re-check was a level-keeping
 * probe, and the cost spacing follows it, so a leave adds one re-check, and the walk goes
 * onward down the ladder where it can. */
static void end_probe(pyc_team* team) {
  int other = team->probe_arm;
  int last = ladder(team) - 1;
  double probe = team->probe_ms / PYC_TEAM_PROBE_RUNS;
  int spike = team->spike;
  int recheck = team->recheck;
  /* an onward probe's level was last timed before the load moved, and on a ladder of more than
   * two levels a re-check's mean holds the spike (neighbours there are within ~2x, and half a
   * spike-inflated mean could not win back): their means start afresh */
  int fresh = (team->onward && !spike) || (recheck && last > 1);
  /* the old mean's weight: a half, halving for every PYC_TEAM_STALE_MS since the level last
   * ran (a mean from a load seconds ago says little about the host now) */
  double age = team->clock - team->seen[other];
  double keep = team->ms[other] > 0.0 && !fresh ? 0.5 * exp2(-(age > 0.0 ? age : 0.0) / PYC_TEAM_STALE_MS) : 0.0;
  team->ms[other] = keep * team->ms[other] + (1.0 - keep) * probe;
  team->seen[other] = team->clock;
  team->probe_ms = 0.0;
  team->spike = 0;
  team->recheck = 0;
  team->onward = 0;
  if (team->ms[other] < team->ms[team->arm] * 0.95) {
    team->up = other < team->arm;
    team->arm = other;
    if (spike) {
      team->recheck = 1;
    } else {
      team->onward = team->up ? other > 0 : other < last;
      team->interval = spaced(team, team->interval);
    }
  } else {
    team->up = other > team->arm;
    /* a re-check that found the load still there: on down the ladder */
    if (recheck) team->onward = team->arm < last;
    /* between two neighbours, which the probes take in turn, each is probed as often as the
     * one neighbour at either end */
    int most = team->arm > 0 && team->arm < last ? PYC_TEAM_MAX_INTERVAL / 2 : PYC_TEAM_MAX_INTERVAL;
    int doubled = team->interval < PYC_TEAM_MIN_INTERVAL ? PYC_TEAM_MIN_INTERVAL : 2 * team->interval;
    team->interval = spaced(team, doubled < most ? doubled : most);
  }
  team->since = 0;
  team->settled = team->ms[team->arm];
}

/* a run at the level in use went by: a probe of a neighbour starts when its interval is up
 * (or at once on a `spike`: the level below) */
static void next_run(pyc_team* team, int spike) {
  int quick = team->recheck || team->onward;
  int interval = team->interval > 0 && !quick ? team->interval : PYC_TEAM_MIN_INTERVAL;
  if (++team->since >= interval || spike) {
    team->probe_left = PYC_TEAM_PROBE_RUNS;
    team->probe_ms = 0.0;
    team->spike = spike;
    if (spike) {
      team->recheck = team->onward = 0;
      team->probe_arm = team->arm + 1;
    } else {
      team->probe_arm = next_level(team);
    }
  }
}

void pyc_team_record(pyc_team* team, int arm, double ms) {
  if (!(ms >= 0.0) || ms > 600000.0) return;  /* a clock step, not a run */
  if (arm < 0 || arm >= PYC_TEAM_LEVELS) return;
  if (!team->warm) {  /* after an idle gap: sleeping threads, cold caches (pyc_runtime.h) */
    team->warm = 1;
    return;
  }
  team->clock += ms;
  if (team->probe_left > 0 && arm == team->probe_arm) {
    team->probe_ms += ms;
    if (--team->probe_left == 0) end_probe(team);
    return;
  }
  if (arm != team->arm) return;
  /* running mean over about the last 8 runs: tails count (a descheduled team thread shows
   * as rare long runs, which is what a smaller team avoids) */
  team->ms[arm] = team->ms[arm] > 0.0 ? team->ms[arm] + (ms - team->ms[arm]) / 8.0 : ms;
  team->seen[arm] = team->clock;
  if (team->settled <= 0.0) team->settled = team->ms[arm];
  /* a level's mean doubling (a load arrived) probes the level below at once; one thread
   * slowing down says nothing good of a larger team */
  next_run(team, arm < ladder(team) - 1 && team->ms[arm] > 2.0 * team->settled);
}

int pyc_team_adaptive(void) {
  const char* text = getenv("PYC_ADAPTIVE_THREADS");
  return !(text != NULL && strcmp(text, "0") == 0);
}

/* milliseconds on a clock for intervals (C11's timespec_get: the wall clock, whose rare steps
 * pyc_team_record drops) */
static double now_ms(void) {
  struct timespec ts;
  if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return -1.0;
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

int pyc_run_begin_team(pyc_team* team, int wanted) {
  return pyc_run_begin_team_work(team, wanted, 0.0);
}

int pyc_run_begin_team_work(pyc_team* team, int wanted, double work) {
  int others = atomic_fetch_add(&runs_in_flight, 1);
  int threads = team_size(wanted, others);
  team->used = -1;
  if (threads > 1 && !team->off) {  /* levels to choose from: threads, threads/2, ..., 1 */
    pyc_team_set_levels(team, pyc_team_levels(threads));
    team->used = pyc_team_arm_work(team, work);
    threads >>= team->used;
    if (threads < 1) threads = 1;
    team->started = now_ms();
    if (team->last_end <= 0.0 || team->started - team->last_end >= PYC_TEAM_IDLE_MS) team->warm = 0;
  }
  return start_team(threads);
}

void pyc_team_record_work(pyc_team* team, int arm, double ms, double work) {
  if (work <= 0.0) {  /* a static model */
    pyc_team_record(team, arm, ms);
    return;
  }
  int typical = pyc_team_typical(team, work);
  double log_work = log(work);
  if (!team->shaped) team->log_work = team->ref_work = log_work;
  team->shaped = 1;
  /* the band follows the shape mix slowly; times are scaled to a fixed reference work, so the
   * arms' means stay in one unit. A mix that moved past the band from the reference starts
   * the means afresh there (the scaling's error grows with the distance) */
  team->log_work += (log_work - team->log_work) / 64.0;
  if (fabs(team->log_work - team->ref_work) > log(PYC_TEAM_WORK_MOVED)) {
    team->ref_work = team->log_work;
    for (int level = 0; level < PYC_TEAM_LEVELS; level++) team->ms[level] = 0.0;
    team->settled = 0.0;
    team->since = team->interval = team->probe_left = 0;
    team->onward = 0;
  }
  if (!typical) {
    /* an atypical run: not timed, but it woke the team as any run does, and the probes keep
     * their schedule in runs (a probe's own runs are the typical ones) */
    team->warm = 1;
    if (arm == team->arm && team->probe_left == 0) next_run(team, 0);
    return;
  }
  pyc_team_record(team, arm, ms * exp(team->ref_work - log_work));
}

void pyc_run_end_team_work(pyc_team* team, int saved, double work) {
  if (team->used >= 0 && team->started >= 0.0) {
    team->last_end = now_ms();
    pyc_team_record_work(team, team->used, team->last_end - team->started, work);
  }
  pyc_run_end(saved);
}

void pyc_run_end_team(pyc_team* team, int saved) {
  pyc_run_end_team_work(team, saved, 0.0);
}
