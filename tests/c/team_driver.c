/* Test driver (tests/runtime/test_adaptive_team.py): the adaptive team's decision
 * (pyc_team_arm / pyc_team_record, runtime_c/pyc_runtime.c) on made-up timings, no model.
 *
 * Built with runtime_c/pyc_runtime.c (-I runtime_c). Reads lines "T0 T1" from stdin: the
 * milliseconds the next run would take at arm 0 (the full team) and at arm 1 (one thread);
 * runs it at the arm the team picks, records that arm's time, and prints the arm (one digit a
 * run, then a newline). A line "raw ARM MS" records MS at ARM whatever the team picked (a clock
 * step, a negative time) and prints nothing; a line "idle" marks the next run as one after an
 * idle gap (pyc_run_begin_team's test), which the team does not count. A line "T0 T1 W" is a
 * run of W units of work (a model of symbolic dims: pyc_team_record_work). */
#include <stdio.h>
#include <string.h>

#include "pyc_runtime.h"

int main(void) {
  pyc_team team;
  memset(&team, 0, sizeof team);
  char line[256];
  while (fgets(line, sizeof line, stdin) != NULL) {
    double t[2], work = 0.0;
    int arm;
    if (strncmp(line, "idle", 4) == 0) {
      team.warm = 0;
    } else if (sscanf(line, "raw %d %lf", &arm, &t[0]) == 2) {
      pyc_team_record(&team, arm, t[0]);
    } else if (sscanf(line, "%lf %lf %lf", &t[0], &t[1], &work) >= 2) {
      arm = pyc_team_arm_work(&team, work);
      pyc_team_record_work(&team, arm, t[arm], work);
      putchar('0' + arm);
    }
  }
  putchar('\n');
  return 0;
}
