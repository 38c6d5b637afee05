/* Test driver (tests/runtime/test_adaptive_team.py): the adaptive team's decision
 * (pyc_team_arm / pyc_team_record, runtime_c/pyc_runtime.c) on made-up timings, no model.
 *
 * Built with runtime_c/pyc_runtime.c (-I runtime_c). Reads lines "T0 T1" from stdin: the
 * milliseconds the next run would take at level 0 (the full team of two) and at level 1 (one
 * thread); runs it at the level the team picks, records that level's time, and prints the
 * level (one digit a run, then a newline). A line "L T0 T1 ... Tn" gives the times at each
 * level of a longer ladder (a full team F: T0 at F threads, T1 at F/2, ..., Tn at one thread;
 * n + 1 = pyc_team_levels(F) levels, at most PYC_TEAM_LEVELS). A line "raw ARM MS" records MS
 * at level ARM whatever the team picked (a clock step, a negative time) and prints nothing; a
 * line "idle" marks the next run as one after an idle gap (pyc_run_begin_team's test), which
 * the team does not count. A line "T0 T1 W" is a run of W units of work (a model of symbolic
 * dims: pyc_team_record_work). A line "threads N" prints pyc_team_levels(N), the ladder's length
 * for a full team of N threads, as one digit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyc_runtime.h"

int main(void) {
  pyc_team team;
  memset(&team, 0, sizeof team);
  char line[1024];
  while (fgets(line, sizeof line, stdin) != NULL) {
    double t[PYC_TEAM_LEVELS], work = 0.0;
    int arm;
    if (strncmp(line, "idle", 4) == 0) {
      team.warm = 0;
    } else if (sscanf(line, "threads %d", &arm) == 1) {
      putchar('0' + pyc_team_levels(arm));
    } else if (sscanf(line, "raw %d %lf", &arm, &t[0]) == 2) {
      pyc_team_record(&team, arm, t[0]);
    } else if (line[0] == 'L') {
      int levels = 0;
      char* at = line + 1;
      char* end = NULL;
      while (levels < PYC_TEAM_LEVELS) {
        double value = strtod(at, &end);
        if (end == at) break;
        t[levels++] = value;
        at = end;
      }
      if (levels < 2) return 2;
      pyc_team_set_levels(&team, levels);
      arm = pyc_team_arm(&team);
      pyc_team_record(&team, arm, t[arm]);
      putchar('0' + arm);
    } else if (sscanf(line, "%lf %lf %lf", &t[0], &t[1], &work) >= 2) {
      pyc_team_set_levels(&team, 2);
      arm = pyc_team_arm_work(&team, work);
      pyc_team_record_work(&team, arm, t[arm], work);
      putchar('0' + arm);
    }
  }
  putchar('\n');
  return 0;
}
