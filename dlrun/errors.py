"""The one exception type for user mistakes (cli.py prints it as one line and exits 2), and dlrun's exit codes.

Exit codes, for scripts and schedulers (README "Exit codes"):
  0    the run finished (whatever the report says, unless report.fail_on lists a verdict that fired)
  1    a dlrun bug: a Python traceback
  2    a user error, in one line: a bad key or value, missing data, an unusable run folder
  3    a sweep in which at least one job failed (the others ran; the summary lists the failures)
  4    the run diverged (non-finite loss, or the monitor above early_stop.divergence_threshold): it stopped, its
       report and checkpoints are written
  5    a verdict listed in report.fail_on fired (a quality gate for CI pipelines and retraining jobs)
  128+N  stopped by signal N after a checkpoint and a partial report (130 Ctrl-C, 143 SIGTERM, 140 SIGUSR2), or
         signal N came after the run had finished (its report complete: cli.py says so in one line)
"""

EXIT_USER_ERROR = 2
EXIT_JOBS_FAILED = 3
EXIT_DIVERGED = 4
EXIT_VERDICT = 5


class DlrunError(Exception):
    """A user mistake (bad config value, missing data, bad resume path): say what was given, what is allowed."""


def unreadable_reason(err: BaseException) -> str:
    """Why torch.load(..., weights_only=True) refused a file, in words (torch's own message is many lines and
    suggests weights_only=False, which would run the file's code)."""
    if "GLOBAL" in str(err):
        return "it holds objects other than tensors and plain values (refused by weights_only loading, not run)"
    return "it is truncated, corrupt or not a file that torch.save wrote"
