"""``tempsched tune``: Optuna studies whose every trial is one whole population run.

``study`` runs them, ``storage`` and ``journal`` keep where they live sound, ``directory`` says which
study a study directory belongs to, ``workers`` starts the processes that share a study, and
``report`` writes the plots. The names below are what the CLI, the tests and the benchmarks use.
"""

from tempsched.tune.directory import BEST_TOML, NAME_FILE, TRIALS, default_study_name
from tempsched.tune.report import REPORT_PLOTS, open_existing, write_report
from tempsched.tune.storage import (JOURNAL, database_url, fail_stale_trials, hide_password, machine, open_storage,
                                    storage_label, worker_id)
from tempsched.tune.study import (FAILURES_IN_A_ROW, FINISHED, PRUNERS, SAMPLERS, StudyResult, TuneSettings,
                                  best_trials, check_settings, counts, load_study, make_sampler, run_study)

__all__ = [
    "BEST_TOML", "FAILURES_IN_A_ROW", "FINISHED", "JOURNAL", "NAME_FILE", "PRUNERS", "REPORT_PLOTS", "SAMPLERS",
    "TRIALS", "StudyResult", "TuneSettings", "best_trials", "check_settings", "counts", "database_url",
    "default_study_name", "fail_stale_trials", "hide_password", "load_study", "machine", "make_sampler",
    "open_existing", "open_storage", "run_study", "storage_label", "worker_id", "write_report",
]
