"""`xp sweep FILE`: the controller of a search, Optuna's ask-and-tell over the queue.

The controller is the study's only writer. Each ask becomes a queued run of the
experiment (its params the trial's suggestion); workers, local or Ray, run it like
any other. While a trial runs, the controller tails its metrics.jsonl, reports the
values to the study and, when the pruner says so, stops the run through the queue
(a `.cancel` intent marked `prune`: the run ends `pruned`). When a run ends, the
queue has recorded how: finished (its metric is the value), pruned, failed/killed/
cancelled (FAIL), lost (retried once, then FAIL).

Crash safety (kill -9 at any instant): the runs are the truth and the journal a cache.
On start the controller takes the sweep's lock, repairs or rebuilds the journal, then
reconciles: a run the study does not know is adopted; a running trial with no run
(killed between ask and submit) gets its run now; a told trial whose run still runs is
stopped. Each step is either done or redone by the next start, so no trial is lost,
duplicated or left running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from xpkit.errors import ConfigError
from xpkit.experiment import Experiment
from xpkit.search import Search
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.trash import trash_dir
from xpkit.sweep import engine, trials
from xpkit.sweep.lock import ControllerLock
from xpkit.sweep.trials import TrialHistory, TrialRun

POLL = 0.5  # seconds between looks at the trials' runs
SETTLE = 3.0  # seconds an ended run may still be requeued by its worker (see _settled)
FAILURES_TO_HALT = 5  # trials failing in a row: stop asking, the program is broken


@dataclass
class Live:
    """A trial the study has RUNNING."""

    trial: Any  # optuna.trial.Trial
    history: TrialHistory | None = None  # None: asked, its run not created yet
    offset: int = 0  # bytes of metrics.jsonl read
    reported: set[int] = field(default_factory=set)
    ended_seen: tuple[str, float] | None = None  # (run, when) its end was first seen


class Controller:
    def __init__(
        self,
        settings: Settings,
        experiment: Experiment,
        file: str,
        *,
        rebuild: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        assert experiment.search is not None
        self.settings, self.experiment, self.file = settings, experiment, file
        self.search: Search = experiment.search
        self.expid = experiment.id
        self.rebuild = rebuild
        self.say = say
        self.fingerprint = self.search.fingerprint()
        self.live: dict[int, Live] = {}
        self.stopping: dict[str, TrialRun] = {}  # runs of told trials that still run
        self.told: dict[str, int] = {}  # trials told, by state
        self.next_key = 0
        self.halted = ""  # why no new trials are asked (the program keeps failing)
        self.failed_in_a_row = 0
        self.provenance: Any = None
        self.env_spec: dict[str, Any] | bool | None = False  # False: not checked yet
        self.study: Any = None
        self.started = time.time()
        self.sweep = os.urandom(4).hex()
        self.held = ExitStack()  # what the controller holds while it runs (a snapshot pin)

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """Run the search until it is done; returns the trials told, by state."""
        from xpkit.store.create import ensure_runs_root

        engine.import_optuna()  # without the extra: say so before anything else
        ensure_runs_root(self.settings.runs)  # a clear error when it cannot be written
        with ControllerLock(self.settings.runs, self.expid, self.file) as lock, self.held:
            self._open()
            while True:
                self._step()
                if self._done():
                    break
                lock.beat()
                time.sleep(POLL)
        self._finish()
        return self.told

    def _step(self) -> None:
        for key, live in list(self.live.items()):
            if live.history is None:
                self._submit(key, live)  # asked by a controller that died before submitting
                continue
            run = live.history.latest
            run.refresh()
            if run.gone:
                if run.trashed():  # `xp rm` of a queued trial: the user gave up on it
                    self._finish_trial(
                        key, live, "FAIL", None, f"{run.name} was moved to the trash"
                    )
                continue  # else out of reach for a moment: look again
            if run.status == "running":
                self._report(key, live)
            elif run.status == "lost":
                self._lost(key, live)
            elif run.status not in rd.ACTIVE and self._settled(live):
                self._tell(key, live)
        for name, run in list(self.stopping.items()):
            run.refresh()
            if run.gone or run.status not in rd.ACTIVE or run.status == "lost":
                del self.stopping[name]
        while self._may_ask():
            self._ask()

    def _busy(self) -> int:
        return len(self.live) + len(self.stopping)

    def _may_ask(self) -> bool:
        if self.halted or self._busy() >= self.search.parallel:
            return False
        planned = self.search.planned
        if planned is not None and sum(self.told.values()) + len(self.live) >= planned:
            return False
        return not self._out_of_time()

    def _out_of_time(self) -> bool:
        budget = self.search.budget
        return budget is not None and time.time() - self.started >= budget

    def _done(self) -> bool:
        return not self.live and not self._may_ask() and not self.stopping

    # --- opening: the study, checked against the runs ------------------------------------
    def _open(self) -> None:
        histories = trials.find(self.settings.runs, self.expid)
        for history in histories.values():
            recorded = (history.runs[0].info.get("search") or {}).get("fingerprint")
            if recorded not in (None, self.fingerprint):
                raise self._changed(len(histories))
        path = engine.journal_path(self.settings.runs, self.expid)
        if self.rebuild:
            aside = engine.set_aside(path)
            self.say(
                f"rebuilding the study from {len(histories)} trial(s)' runs"
                + (f" (the old journal is kept as {aside})" if aside else "")
            )
        elif histories and not path.exists():
            self.say(
                f"no study journal on this machine: rebuilding it from the runs of "
                f"{len(histories)} trial(s)"
            )
        try:
            self.study = engine.open_study(self.search, path, self.expid)
            stored = self.study.get_trials(deepcopy=False)
        except (ValueError, KeyError, AttributeError) as e:
            aside = engine.set_aside(path)
            self.say(
                f"the study journal could not be read ({e}); kept as {aside}, rebuilding "
                "it from the runs"
            )
            self.study = engine.open_study(self.search, path, self.expid)
            stored = []
        attrs = self.study.user_attrs
        if attrs.get("fingerprint") not in (None, self.fingerprint):
            raise self._changed(len(stored))
        if "fingerprint" not in attrs:
            first = min(histories.values(), key=lambda h: h.key, default=None)
            self.sweep = str((first.runs[0].info.get("sweep") if first else None) or self.sweep)
            self.study.set_user_attr("fingerprint", self.fingerprint)
            self.study.set_user_attr("sweep", self.sweep)
            self.study.set_user_attr("started", time.time())
        self.sweep = str(self.study.user_attrs["sweep"])
        self.started = float(self.study.user_attrs["started"])
        self._reconcile(stored, histories)

    def _changed(self, count: int) -> ConfigError:
        return ConfigError(
            f"{self.file}: its [search] (params, method, metric, goal or seed) changed since its "
            f"study began ({count} trial(s)); a different search is a new experiment: "
            f"`xp new NEW --from {self.file}` copies the file with a fresh ID"
        )

    def _reconcile(self, stored: list[Any], histories: dict[int, TrialHistory]) -> None:
        optuna = engine.import_optuna()
        known: dict[int, Any] = {}
        for frozen in stored:
            key = frozen.user_attrs.get(engine.KEY)
            if isinstance(key, int):
                known[key] = frozen
        self.next_key = 1 + max([*known, *histories, -1])
        for key, history in sorted(histories.items()):
            if key not in known:
                trial = trials.adopt(self.study, self.search, history)
                if trial is None:
                    state, _, _ = trials.outcome(history, self.search.metric)
                    self._count(state)
                    self._stop_extra(history)
                else:
                    self._watch(key, trial, history)
        running = optuna.trial.TrialState.RUNNING
        trashed = trials.find(trash_dir(self.settings.runs), self.expid)
        for frozen in stored:
            key = frozen.user_attrs.get(engine.KEY)
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            if frozen.state != running:
                self._count(frozen.state.name)
                if isinstance(key, int) and key in histories:
                    self._stop_extra(histories[key], pruned=frozen.state.name == "PRUNED")
                continue
            if not isinstance(key, int):  # killed between ask and naming it
                key = self.next_key
                self.next_key += 1
                trial.set_user_attr(engine.KEY, key)
            if key not in histories and key in trashed:
                live = self.live[key] = Live(trial, trashed[key])
                why = f"{trashed[key].latest.name} was moved to the trash"
                self._finish_trial(key, live, "FAIL", None, why)
                continue
            self._watch(key, trial, histories.get(key))
        if stored or histories:
            self.say(
                f"continuing: {sum(self.told.values())} trial(s) done, {len(self.live)} "
                "running or queued"
            )

    def _watch(self, key: int, trial: Any, history: TrialHistory | None) -> None:
        live = self.live[key] = Live(trial, history)
        frozen = self.study._storage.get_trial(trial._trial_id)
        live.reported = set(frozen.intermediate_values)

    def _stop_extra(self, history: TrialHistory, pruned: bool = False) -> None:
        """A trial the study has told may still have a run that runs (the controller died
        between telling and stopping it; a worker retried it meanwhile): stop it."""
        from xpkit.queue import files

        for run in history.runs:
            if run.status in rd.ACTIVE:
                if files.cancel_intent(run.run_dir) is None:
                    files.write_cancel_intent(
                        run.run_dir,
                        requeue=False,
                        prune=str(run.info.get("reason") or "pruned") if pruned else None,
                    )
                self.stopping[run.name] = run

    # --- asking and submitting ---------------------------------------------------------
    def _ask(self) -> None:
        trial = self.study.ask(fixed_distributions=engine.distributions(self.search))
        key = self.next_key
        self.next_key += 1
        trial.set_user_attr(engine.KEY, key)
        live = self.live[key] = Live(trial)
        self._submit(key, live)

    def _submit(self, key: int, live: Live) -> None:
        from xpkit.execute.launch import experiment_ref
        from xpkit.queue.submit import QueueRequest, submit
        from xpkit.store.create import NewRun

        params = dict(live.trial.params)
        spec = self.experiment.trial_spec(params)
        experiment = self.experiment
        new = NewRun(
            expid=self.expid,
            slug=spec.slug,
            command=spec.command,
            argv=None,
            params=spec.params,
            config=spec.config,
            experiment=experiment_ref(self.settings, experiment),
            tags=experiment.tags,
            gpus=experiment.gpus,
            sweep=self.sweep,
            metrics_from=experiment.metrics_from,
            resumable=experiment.resumable,
            stop_signal=experiment.stop_signal,
            app=experiment.app,
            search={"study": self.expid, "trial": key, "fingerprint": self.fingerprint},
            env=self._env(),
        )
        (run_dir,) = submit(
            self.settings, [new], self._provenance(), QueueRequest(), announce=False
        )
        live.history = TrialHistory(key, [TrialRun(run_dir, run_dir.read_run(), "queued")])
        live.trial.set_user_attr("run", run_dir.name)
        self._hooks(run_dir, first=key == 0)
        shown = ", ".join(f"{k}={engine_value(v)}" for k, v in params.items())
        self.say(f"trial {key}: {run_dir.name} queued ({shown})")

    def _provenance(self) -> Any:
        """The code every trial of this controller runs: a snapshot of the working tree
        taken at its first submit, kept from `xp gc --snapshots` while it lives. A later
        `xp sweep FILE` takes its own (so a fixed bug reaches the remaining trials)."""
        if self.provenance is None:
            from xpkit.store.create import capture_provenance, ensure_runs_root
            from xpkit.store.pins import snapshot_pin

            ensure_runs_root(self.settings.runs)
            pin = self.held.enter_context(snapshot_pin(self.settings.runs))
            self.provenance = capture_provenance(self.settings, no_git=False)
            if self.provenance.snapshot is not None:
                pin.set(self.provenance.snapshot.snapshot)
        return self.provenance

    def _env(self) -> dict[str, Any] | None:
        """The trials' environment spec, checked once per controller start."""
        if self.env_spec is False:
            from xpkit.execute.launch import run_env

            self.env_spec = run_env(self.settings, self.experiment)
        return self.env_spec if isinstance(self.env_spec, dict) else None

    def _hooks(self, run_dir: Any, *, first: bool) -> None:
        from xpkit.hooks import events

        if not events.specs_of(self.settings):
            return
        planned = self.search.planned or 1_000_000_000  # a budget: announced when done
        events.remember_runs(self.settings, self.sweep, [run_dir.name], planned=planned)
        if first:
            events.sweep_submitted(self.settings, [run_dir], planned=self.search.planned)

    # --- watching ----------------------------------------------------------------------
    def _report(self, key: int, live: Live) -> None:
        """Report the metric's new values; stop the run if the pruner says so."""
        assert live.history is not None
        run = live.history.latest
        values, live.offset = engine.metric_values(
            run.run_dir.file(rd.METRICS), self.search.metric, live.offset
        )
        fresh = [(step, value) for step, value in values if step not in live.reported]
        if not fresh:
            return
        for step, value in fresh:
            live.trial.report(value, step)
            live.reported.add(step)
        if self.search.pruner["type"] == "none" or not live.trial.should_prune():
            return
        from xpkit.queue import files

        step, value = fresh[-1]
        reason = (
            f"pruned at step {step}: {self.search.metric} {value:.6g} "
            f"({self.search.pruner['type']} pruner)"
        )
        files.write_cancel_intent(run.run_dir, requeue=False, prune=reason)
        self._finish_trial(key, live, "PRUNED", None, reason)
        self.stopping[run.name] = run

    def _lost(self, key: int, live: Live) -> None:
        """Retried once (as the queue requeues: the next attempt of a resumable run, else
        a new run of the experiment with this trial's key), then FAIL."""
        from xpkit.errors import QueueError
        from xpkit.queue.submit import requeue

        assert live.history is not None
        run = live.history.latest
        if self._requeued(live):
            return  # a worker (--requeue-lost) retried it
        if live.history.losses() >= trials.MAX_LOSSES:
            self._finish_trial(
                key,
                live,
                "FAIL",
                None,
                f"{run.name} lost twice: {run.info.get('reason') or 'its worker stopped'}",
            )
            return
        try:
            new = requeue(self.settings, run.run_dir)
        except QueueError as e:
            if "already requeued" not in str(e):
                self._finish_trial(key, live, "FAIL", None, f"{run.name} lost: {e}")
            return
        self.say(f"trial {key}: {run.name} was lost; retried as {new}")
        if new != run.name:
            self._follow(live, new)

    def _requeued(self, live: Live) -> bool:
        """Whether the trial's latest run was put back in the queue: as its next attempt
        (seen queued at the next look) or as a new run carrying the trial (followed)."""
        from xpkit.queue.submit import requeued_as

        assert live.history is not None
        run = live.history.latest
        record = requeued_as(run.run_dir, int(run.info.get("attempt") or 1)) or {}
        copy = run.info.get("requeued_as") or record.get("copy")
        if copy and copy != run.name and (self.settings.runs / copy).is_dir():
            self._follow(live, copy)
            return True
        return bool(record.get("attempt"))

    def _settled(self, live: Live) -> bool:
        """A run that ended killed, cancelled or failed may be on its way back to the
        queue (a preempted resumable run, exit code 75, a worker's second SIGTERM): its
        worker requeues it right after recording the end. Told once SETTLE seconds went
        by without that; a pruned or finished run at once."""
        assert live.history is not None
        run = live.history.latest
        if run.status in ("finished", "pruned"):
            return True
        if self._requeued(live):
            live.ended_seen = None
            return False
        now = time.monotonic()
        if live.ended_seen is None or live.ended_seen[0] != run.name:
            live.ended_seen = (run.name, now)
        return now - live.ended_seen[1] >= SETTLE

    def _follow(self, live: Live, name: str) -> None:
        assert live.history is not None
        if any(r.name == name for r in live.history.runs):
            return
        from xpkit.store.rundir import RunDir

        run_dir = RunDir(self.settings.runs / name)
        info = run_dir.read_run()
        live.history.runs.append(TrialRun(run_dir, info, rd.status_of(run_dir, info)))
        live.offset = 0

    def _tell(self, key: int, live: Live) -> None:
        assert live.history is not None
        state, value, why = trials.outcome(live.history, self.search.metric)
        self._finish_trial(key, live, state, value, why)

    def _finish_trial(
        self, key: int, live: Live, state: str, value: float | None, why: str
    ) -> None:
        optuna = engine.import_optuna()
        name = live.history.latest.name if live.history else "?"
        if why:
            live.trial.set_user_attr("reason", why[:500])
        if state == "COMPLETE":
            engine.tell(self.study, live.trial, value)
            best = self.study.best_trial.user_attrs.get(engine.KEY) == key
            self.say(
                f"trial {key}: {name} finished: {self.search.metric} {value:.6g}"
                + (" (best so far)" if best else "")
            )
        else:
            engine.tell(self.study, live.trial, state=getattr(optuna.trial.TrialState, state))
            self.say(
                f"trial {key}: {name} {'pruned' if state == 'PRUNED' else 'failed'}"
                + (f": {why}" if why else "")
            )
        del self.live[key]
        self._count(state)
        self.failed_in_a_row = self.failed_in_a_row + 1 if state == "FAIL" else 0
        if self.failed_in_a_row >= FAILURES_TO_HALT and not self.halted:
            self.halted = why
            self.say(
                f"{self.failed_in_a_row} trials in a row failed (last: {why}; `xp logs {name}` "
                f"shows why); no new trials. Fix the program, then `xp sweep {self.file}` "
                "continues the study"
            )

    def _count(self, state: str) -> None:
        self.told[state] = self.told.get(state, 0) + 1

    def _finish(self) -> None:
        from xpkit.hooks import events

        words = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed"}
        counts = ", ".join(f"{n} {words.get(s, s)}" for s, n in sorted(self.told.items()))
        self.say(f"done: {sum(self.told.values())} trial(s) ({counts or 'none'})")
        completed = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if completed:
            best = self.study.best_trial
            shown = ", ".join(f"{k}={engine_value(v)}" for k, v in best.params.items())
            self.say(
                f"best: trial {best.user_attrs.get(engine.KEY)} "
                f"({best.user_attrs.get('run', '?')}): {self.search.metric} "
                f"{best.value:.6g} with {shown}"
            )
        if not self.halted and events.specs_of(self.settings):
            events.finish_sweep(self.settings, self.sweep)


def engine_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
