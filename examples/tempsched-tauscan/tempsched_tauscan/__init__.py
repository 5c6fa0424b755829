"""An evaluation: each run's best model measured on its test set at multiples of its own temperature."""

from tempsched import EvalContext, Evaluation, Param, hookimpl


class TauScan(Evaluation):
    name = "tau-scan"
    title = "Each best model's test metrics at multiples of its tau"
    params = {"factors": Param([0.5, 1.0, 2.0], "multiples of the run's tau to measure at")}

    def __init__(self, factors: list[float]) -> None:
        self.factors = factors

    def run(self, ctx: EvalContext) -> None:
        rows, names = [], []
        for run_dir in ctx.need_runs():
            run = ctx.load_run(run_dir)  # its configuration, task (data loaded) and best model
            for factor in self.factors:
                metrics = run.task.test_metrics(run.model, run.tau * factor)
                names = list(metrics)
                rows.append([run_dir.name, run.config.plugin, factor, run.tau * factor, *metrics.values()])
        ctx.report.table("scan", ["run", "preset", "factor", "tau", *names], rows)


@hookimpl
def tempsched_register_evaluations(register: object) -> None:
    register(TauScan)
