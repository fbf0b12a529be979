"""The ledger and the monitors inside a Hugging Face TRL ``GRPOTrainer`` run.

::

    from trl import GRPOConfig, GRPOTrainer
    from trustgrpo.integrations.trl import TrustCallback, audited
    from trustgrpo.ledger import Ledger

    ledger = Ledger.open("runs/trl")                     # the run directory
    trainer = GRPOTrainer(
        model=..., train_dataset=..., args=GRPOConfig(output_dir="runs/trl", ...),
        reward_funcs=[audited(my_reward, ledger), audited({"type": "numeric"}, ledger)],
        callbacks=[TrustCallback(ledger, reference="answer")],
    )
    trainer.train()
    ledger.close()

:func:`audited` wraps a TRL reward function (``f(prompts, completions, **kwargs) ->
list[float | None]``), a trustgrpo verifier, or a ``[[verifiers]]`` table. TRL calls the
wrapper as it calls any reward function; the function itself is called with exactly TRL's
arguments and its values become typed outcomes through
:class:`~trustgrpo.verifiers.function.FunctionVerifier` (``None`` → abstain; raising, NaN, a
bool or a wrong length → ``error``). TRL gets the score, or ``None`` for an unscored outcome,
never a 0 for a failure.

:class:`TrustCallback` drives the native trainer's hooks (:mod:`trustgrpo.callbacks`) from
TRL's, so the events are written by the same :class:`~trustgrpo.ledger.callback.LedgerCallback`
as in a native run, and ``trustgrpo audit verify|replay|trace``, ``monitor`` and the report read
them unchanged::

    first reward call   run_started (or run_resumed): TRL's config as config.trl, a
                        [[verifiers]] table per audited function (weight = TRL's reward_weights),
                        model and data SHA-256, package versions; signed
    on_step_end         one reward event per sample (step = trainer_state.global_step + 1, as
                        TRL's completion table numbers it), the monitors, a step event, a
                        signed checkpoint
    on_save             a checkpoint event with the SHA-256 of the saved weights; signed, waited
    on_train_end        run_finished; signed, waited. The ledger stays open: whoever opened it
                        closes it.

Where a TRL run departs from a native one:

1. ``reward`` is the sum TRL trains on: ``Σ weight · value`` over *all* its reward functions,
   audited or not, where a ``None`` adds nothing (``nansum``); it is null only when every
   function returned ``None`` (TRL then leaves the sample out of the baseline and gives it
   advantage 0). ``advantage`` is TRL's. So an ``error`` outcome is never a 0 in its
   function's values, but beside another function that scored, the sample still trains.
2. Callbacks run after the optimizer step: a ``halt`` alert (or a callback returning False)
   stops training after the update of the step it fired on; that step is checkpointed
   (``control.should_save``) when ``save_strategy`` is not ``"no"``.
3. Only detectors that read the record run (length bias, component dominance, verifier health,
   group bias, saturation, training health); those that need trustgrpo's trainer (held-out,
   canaries, nondeterminism, probe drift) do not.
4. Replay: trustgrpo verifiers replay as in a native run. A function replays when it is
   importable by path (not from ``__main__``), reads only ``prompts``, ``completions`` and data
   columns (not ``completion_ids``, ``trainer_state`` or ``environments``), and the data is in
   TRL's standard (text) format; the reference column should hold text.
5. One process: a multi-process (``accelerate``/DDP) run is refused, since each process scores
   only its slice of the batch.
6. Calls made while the model is in eval mode (``trainer.evaluate``) are scored, not recorded.

TRL internals read (tested with TRL 1.16): the trainer, as the owner of the ``log_extra`` method
TRL passes to reward functions; its completion log ``_logs`` (per-function values and advantages)
and its step scalars ``_metrics`` (KL, entropy, ... for the step event). If they are missing or
do not match the batch, ``reward`` falls back to the audited functions' weighted sum and
``advantage`` to 0, and the step metric ``trl/unmatched`` counts those samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import inspect
import io
import json
import logging
import math
import os
import platform
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trustgrpo.callbacks import Callback, CheckpointInfo, RunInfo, StepBatch
from trustgrpo.checkpoint import sha256_file
from trustgrpo.errors import ConfigError, TrainingStopped, UserError
from trustgrpo.ledger.callback import LedgerCallback
from trustgrpo.ledger.canonical import to_jsonable
from trustgrpo.ledger.ledger import Ledger
from trustgrpo.monitors import ComponentInfo, Context, MonitorCallback, MonitorsConfig, load_config
from trustgrpo.verifiers.base import Outcome, Sample, Verifier, error_outcome, safe_score
from trustgrpo.verifiers.compose import Component, Reward
from trustgrpo.verifiers.function import FunctionVerifier, load_function
from trustgrpo.verifiers.registry import build_component, check_specs

log = logging.getLogger(__name__)

TRL_ONLY = frozenset({"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})
"""Keyword arguments TRL passes to reward functions that are not data columns."""
NOT_RECORDED = frozenset({"image", "images"})
"""Data columns kept out of a sample's recorded metadata (pixels are not text)."""
GRPO_KEYS = (
    "num_generations",
    "learning_rate",
    "beta",
    "epsilon",
    "epsilon_high",
    "num_iterations",
    "loss_type",
    "scale_rewards",
    "multi_objective_aggregation",
    "reward_weights",
    "max_completion_length",
    "temperature",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
)
"""TRL arguments shown as the run's ``[grpo]`` settings (all of them are under ``trl.args``)."""


# --------------------------------------------------------------------------- reward functions


class _TRLFunction(FunctionVerifier):
    """A :class:`FunctionVerifier` that, during training, calls its function exactly as TRL
    did (every keyword TRL passed). Outcomes, errors and version are the base class's, so a
    plain ``FunctionVerifier`` rebuilt by ``audit replay`` has the same ``name@version``."""

    _produce: Callable[[], Any] | None = None

    def _call(self, samples: Sequence[Sample]) -> Any:
        return super()._call(samples) if self._produce is None else self._produce()

    def call(self, prompts: list[Any], completions: list[Any], kwargs: Mapping[str, Any]) -> Any:
        """The function called as TRL calls it, with this verifier's own constant keywords."""
        return self.fn(prompts=prompts, completions=completions, **{**kwargs, **self.kwargs})

    def score_values(self, samples: Sequence[Sample], produce: Callable[[], Any]) -> list[Outcome]:
        """Outcomes of what ``produce()`` returns (or raises) for ``samples``."""
        self._produce = produce
        try:
            return safe_score(self, samples)
        finally:
            self._produce = None


class AuditedReward:
    """A reward function for TRL's ``GRPOTrainer`` that records what it scores (see
    :func:`audited`). ``verifier`` is the trustgrpo verifier behind it."""

    def __init__(self, target: Any, session: _Session, correct_at: float) -> None:
        self._target = target
        self._session = session
        self._correct_at = correct_at
        self._verifier: Any = None
        self.type = ""
        """The verifier type recorded for replay (``numeric``, ``package.module:function``)."""
        self.params: dict[str, Any] = {}
        self.__name__ = _display_name(target)
        self.__qualname__ = self.__name__

    @property
    def verifier(self) -> Any:
        """The verifier, built on first use with the run's reference column."""
        if self._verifier is None:
            self._build(self._session.reference)
        return self._verifier

    def __call__(
        self, prompts: list[Any], completions: list[Any], **kwargs: Any
    ) -> list[float | None]:
        batch = self._session.batch(prompts, completions, kwargs)
        v = self.verifier
        if isinstance(v, _TRLFunction):
            outcomes = v.score_values(batch.samples, lambda: v.call(prompts, completions, kwargs))
        else:
            outcomes = safe_score(v, batch.samples)
        return self._session.record(batch, self, outcomes)

    def _build(self, reference: str) -> None:
        t = self._target
        v: Any
        if isinstance(t, Mapping):
            spec = dict(t)
            if ":" in str(spec.get("type", "")):
                spec.setdefault("reference_kwarg", reference)
            comp = build_component(spec, path=f"audited({self.__name__})")
            v, self.type, self.params = comp.verifier, comp.type, dict(comp.params)
        elif isinstance(t, FunctionVerifier):
            v, self.type, self.params = t, t.path, dict(t.params)
        elif isinstance(t, Verifier):
            describe = getattr(t, "describe", None)
            d = dict(describe()) if callable(describe) else {}
            v, self.type = t, str(d.get("type") or type(t).__name__)
            self.params = dict(d.get("params") or {})
        else:
            v = _TRLFunction(
                t, name=self.__name__, reference_kwarg=reference, correct_at=self._correct_at
            )
            self.type, self.params = v.path, dict(v.params)
        if isinstance(v, FunctionVerifier):
            if v.reference_kwarg != reference:
                raise ConfigError(
                    [
                        f"audited({self.__name__}): reference_kwarg {v.reference_kwarg!r} differs "
                        f"from the run's reference column {reference!r} (TrustCallback(reference=))"
                    ]
                )
            if not isinstance(v, _TRLFunction):
                v = _TRLFunction(v.fn, v.path, name=v.name, **v.params)
        self._verifier = v

    def spec(self, weight: float) -> dict[str, Any]:
        """The ``[[verifiers]]`` table ``audit replay`` rebuilds this verifier from."""
        v = self.verifier
        return {
            "type": self.type,
            "name": v.name,
            "weight": weight,
            "role": "reward",
            **self.params,
        }

    def __repr__(self) -> str:
        return f"audited({self.__name__})"


class AsyncAuditedReward(AuditedReward):
    """:class:`AuditedReward` for an ``async def`` function (TRL awaits it in its loop)."""

    async def __call__(  # type: ignore[override]
        self, prompts: list[Any], completions: list[Any], **kwargs: Any
    ) -> list[float | None]:
        batch = self._session.batch(prompts, completions, kwargs)
        v = self.verifier
        try:
            values = await v.call(prompts, completions, kwargs)
            produce: Callable[[], Any] = lambda: values  # noqa: E731
        except Exception as e:
            produce = _raiser(e)
        return self._session.record(batch, self, v.score_values(batch.samples, produce))


def audited(
    target: Callable[..., Any] | Verifier | Mapping[str, Any],
    ledger: Ledger,
    *,
    correct_at: float = 1.0,
) -> AuditedReward:
    """``target`` as a TRL reward function whose every call is recorded in ``ledger``.

    ``target`` is a TRL reward function (module-level, ``async def`` too; its name is TRL's
    ``__name__``), a trustgrpo verifier, or a ``[[verifiers]]`` table such as
    ``{"type": "math"}``. ``correct_at``: the value from which a function's reward counts as
    ``correct`` (below it, ``incorrect`` with that score). Records go through the
    :class:`TrustCallback` on the same ledger, which the trainer must have.
    """
    _check_target(target, correct_at)
    session = _session_of(ledger)
    cls = AsyncAuditedReward if _is_async(_function_of(target)) else AuditedReward
    wrapper = cls(target, session, correct_at)
    session.parts.append(wrapper)
    return wrapper


def _check_target(target: Any, correct_at: float) -> None:
    if isinstance(target, Mapping):
        problems = check_specs([dict(target)])
        if problems:
            raise ConfigError([p.replace("verifiers[0]", "audited") for p in problems])
        return
    if isinstance(target, Verifier):
        return
    if not callable(target):
        raise UserError(
            "audited: expected a TRL reward function, a trustgrpo verifier or a [[verifiers]] "
            f"table, got {type(target).__name__}"
        )
    problems = FunctionVerifier.check_params({"correct_at": correct_at}, "audited", target)
    if problems:
        raise ConfigError(problems)
    if getattr(target, "__module__", "") == "__main__":
        warnings.warn(
            f"audited({_display_name(target)}): a function defined in __main__ cannot be "
            "imported by `trustgrpo audit replay`; define it in a module to make it replayable",
            UserWarning,
            stacklevel=3,
        )


def _display_name(target: Any) -> str:
    if isinstance(target, Mapping):
        return str(target.get("name") or target.get("type") or "verifier")
    name = getattr(target, "name", None) if isinstance(target, Verifier) else None
    return str(name or getattr(target, "__name__", None) or type(target).__name__)


def _function_of(target: Any) -> Any:
    """The reward function behind ``target``, or None for a verifier."""
    if isinstance(target, FunctionVerifier):
        return target.fn
    if isinstance(target, Mapping):
        vtype = str(target.get("type", ""))
        return load_function(vtype)[0] if ":" in vtype else None
    return None if isinstance(target, Verifier) else target


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async callable object
    )


def _raiser(error: Exception) -> Callable[[], Any]:
    def produce() -> Any:
        raise error

    return produce


# --------------------------------------------------------------------------- batches


@dataclasses.dataclass
class _Batch:
    """The samples of one call of TRL's reward functions (one generation batch)."""

    step: int
    completions: list[Any]
    """TRL's list: every reward function of a batch receives this same object."""
    samples: list[Sample]
    recorded: bool
    outcomes: dict[AuditedReward, list[Outcome]] = dataclasses.field(default_factory=dict)
    rewards: np.ndarray | None = None
    advantages: np.ndarray | None = None
    unmatched: int = 0


class _Session:
    """What the audited functions and the callback of one ledger share."""

    def __init__(self) -> None:
        self.parts: list[AuditedReward] = []
        self.callback: TrustCallback | None = None
        self.reference = "answer"
        self.trainer: Any = None
        self.pending: list[_Batch] = []
        self.current: _Batch | None = None

    def batch(
        self, prompts: list[Any], completions: list[Any], kwargs: Mapping[str, Any]
    ) -> _Batch:
        cur = self.current
        if cur is not None and cur.completions is completions:
            return cur
        self.trainer = _trainer_of(kwargs) or self.trainer
        training = bool(getattr(getattr(self.trainer, "model", None), "training", True))
        cb = self.callback
        if training and (cb is None or cb.args is None):
            raise UserError(
                "audited reward functions record through TrustCallback: pass "
                "callbacks=[TrustCallback(ledger)] with the same ledger to the GRPOTrainer"
            )
        if cur is not None and cur.recorded and cb is not None:
            cb.seal(cur)  # TRL has logged the previous batch by now
        if training and cb is not None:
            cb.start()
        state = kwargs.get("trainer_state") or (cb.state if cb is not None else None)
        samples = _samples(prompts, completions, kwargs, self, cb)
        batch = _Batch(int(getattr(state, "global_step", 0)) + 1, completions, samples, training)
        if training:
            self.pending.append(batch)
        self.current = batch
        return batch

    def record(
        self, batch: _Batch, part: AuditedReward, outcomes: list[Outcome]
    ) -> list[float | None]:
        if batch.recorded:
            batch.outcomes[part] = outcomes
        return [o.score for o in outcomes]  # None exactly when unscored

    def parts_in(self, trainer: Any) -> list[AuditedReward]:
        """The audited functions of this ledger, in the trainer's order when it is known."""
        funcs = list(getattr(trainer, "reward_funcs", None) or [])
        mine = [f for f in funcs if isinstance(f, AuditedReward) and f._session is self]
        return mine if trainer is not None else list(self.parts)


_SESSIONS: weakref.WeakKeyDictionary[Ledger, _Session] = weakref.WeakKeyDictionary()


def _session_of(ledger: Ledger) -> _Session:
    if not isinstance(ledger, Ledger):
        raise UserError(f"expected a trustgrpo Ledger (Ledger.open(run_dir)), got {ledger!r}")
    session = _SESSIONS.get(ledger)
    if session is None:
        session = _SESSIONS[ledger] = _Session()
    return session


def _trainer_of(kwargs: Mapping[str, Any]) -> Any:
    """The GRPOTrainer that made the call: the owner of the bound methods TRL passes."""
    for key in ("log_extra", "log_metric"):
        owner = getattr(kwargs.get(key), "__self__", None)
        if owner is not None and hasattr(owner, "reward_funcs"):
            return owner
    return None


def _samples(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    kwargs: Mapping[str, Any],
    session: _Session,
    cb: TrustCallback | None,
) -> list[Sample]:
    """TRL's batch as samples: groups of consecutive completions of one prompt."""
    n = len(completions)
    columns = {
        k: v
        for k, v in kwargs.items()
        if k not in TRL_ONLY and k not in NOT_RECORDED and isinstance(v, list) and len(v) == n
    }
    refs = columns.pop(session.reference, None)
    ids = kwargs.get("completion_ids")
    ids = ids if isinstance(ids, list) and len(ids) == n else None
    g = int(getattr(session.trainer, "num_generations", 0) or 0)
    g = g or (int(getattr(cb.args, "num_generations", 0) or 0) if cb and cb.args else 0)
    max_len = getattr(cb.args, "max_completion_length", None) if cb and cb.args else None
    eos = cb.eos_token_id if cb is not None else None
    texts = [_prompt_text(p) for p in prompts]
    out: list[Sample] = []
    for i, (gid, idx) in enumerate(_groups(texts, g)):
        prompt = texts[i - idx]  # a group shares one prompt object, and its id
        pid = out[-1].prompt_id if idx else hashlib.sha256(prompt.encode()).hexdigest()[:16]
        tokens = ids[i] if ids is not None else []
        truncated = bool(max_len and len(tokens) >= max_len and (eos is None or tokens[-1] != eos))
        out.append(
            Sample(
                prompt_id=pid,
                group_id=gid,
                index=idx,
                prompt=prompt,
                completion=_completion_text(completions[i]),
                reference=None if refs is None else _reference_text(refs[i]),
                metadata={k: v[i] for k, v in columns.items()},
                num_tokens=len(tokens),
                truncated=truncated,
            )
        )
    return out


def _groups(prompts: Sequence[str], g: int) -> list[tuple[int, int]]:
    """``(group, index in group)`` per sample: blocks of ``g`` when the batch is laid out so
    (TRL repeats each prompt ``num_generations`` times in a row), else runs of one prompt."""
    n = len(prompts)
    if g > 0 and n % g == 0 and all(prompts[i] == prompts[i - i % g] for i in range(n)):
        return [(i // g, i % g) for i in range(n)]
    out: list[tuple[int, int]] = []
    group = index = -1
    for i, p in enumerate(prompts):
        if i == 0 or p != prompts[i - 1]:
            group, index = group + 1, 0
        else:
            index += 1
        out.append((group, index))
    return out


def _prompt_text(prompt: Any) -> str:
    return (
        prompt if isinstance(prompt, str) else json.dumps(to_jsonable(prompt), ensure_ascii=False)
    )


def _completion_text(completion: Any) -> str:
    """The generated text; for a conversational completion, its messages' contents."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and all(
        isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in completion
    ):
        return "".join(m["content"] for m in completion)
    return json.dumps(to_jsonable(completion), ensure_ascii=False)


def _reference_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(to_jsonable(value), ensure_ascii=False)


def _trl_log(trainer: Any, batch: _Batch) -> tuple[np.ndarray, np.ndarray] | None:
    """TRL's reward (``Σ w·value``, NaN when no function scored) and advantage per sample,
    from its completion log, when the log's tail is this batch; else None."""
    logs = getattr(trainer, "_logs", None)
    names = list(getattr(trainer, "reward_func_names", None) or [])
    weights = _floats(getattr(trainer, "reward_weights", None))
    n = len(batch.samples)
    if not isinstance(logs, Mapping) or not names or len(set(names)) != len(names):
        return None
    try:
        logged = list(logs["completion"])[-n:]
        advantages = np.asarray(list(logs["advantages"])[-n:], dtype=np.float64)
        values = np.asarray(
            [list(logs["rewards"][name])[-n:] for name in names], dtype=np.float64
        ).T
    except (KeyError, TypeError, ValueError):
        return None
    if logged != list(batch.completions) or advantages.shape != (n,) or len(weights) != len(names):
        return None
    if values.shape != (n, len(names)):
        return None
    return _weighted_sum(values, np.asarray(weights)), advantages


def _weighted_sum(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``nansum(values · weights)`` per row; NaN where the whole row is NaN (as TRL)."""
    out = np.nansum(values * weights, axis=1) if values.size else np.zeros(len(values))
    out[np.isnan(values).all(axis=1)] = np.nan
    return out


def _floats(x: Any) -> list[float]:
    if x is None:
        return []
    items = x.tolist() if hasattr(x, "tolist") else list(x)
    return [float(v) for v in items]


# --------------------------------------------------------------------------- the callback


class TrustCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that writes a TRL GRPO run into ``ledger`` and runs
    trustgrpo's monitors on it (see the module docstring for what is written when).

    ``reference``: the dataset column holding reference answers (a sample's ``reference``;
    function verifiers receive it under that keyword, as TRL passes it).

    ``monitors``: ``None`` runs the detectors with their default settings, like a native run
    without a ``[monitors]`` table; a mapping (a ``[monitors]`` table) or a
    :class:`~trustgrpo.monitors.MonitorsConfig` sets them (``{"enabled": False}`` for none);
    a list of trustgrpo :class:`~trustgrpo.callbacks.Callback` objects replaces them (each gets
    ``on_train_start``, ``on_step_rewards``, ``on_step_end``, ``on_checkpoint`` and
    ``on_train_end``). A ``halt`` alert, a :class:`~trustgrpo.errors.TrainingStopped` raised
    by a callback, or ``on_step_end`` returning False sets ``control.should_training_stop``.
    """

    def __init__(
        self,
        ledger: Ledger,
        monitors: Mapping[str, Any] | MonitorsConfig | Sequence[Callback] | None = None,
        *,
        reference: str = "answer",
    ) -> None:
        session = _session_of(ledger)
        built = [p.__name__ for p in session.parts if p._verifier is not None]
        if built and reference != session.reference:
            raise ConfigError([f"TrustCallback.reference: set it before {built[0]} is called"])
        self.ledger = ledger
        self._session = session
        session.callback = self  # the latest callback of a ledger records its calls
        session.reference = reference
        self._monitor_cfg, self._custom, self._monitors_table = _parse_monitors(monitors)
        self.args: TrainingArguments | None = None
        self.state: TrainerState | None = None
        self.eos_token_id: int | None = None
        self.run: RunInfo | None = None
        """The run as trustgrpo callbacks see it, once started."""
        self.callbacks: list[Callback] = []
        """The ledger recorder, then the monitors, once started."""
        self.stopped: str | None = None
        """Why a monitor or callback stopped training, if one did."""
        self._parts: list[AuditedReward] = []
        self._tail = _MetricTail()
        self._metrics: dict[str, float] = {}
        self._begin: dict[str, Any] = {}

    # ------------------------------------------------------------------ TRL's hooks

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        processing_class: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if int(getattr(args, "world_size", 1)) > 1:
            raise UserError(
                "TrustCallback: multi-process TRL runs are not supported (each process scores "
                "only its share of a batch); train in one process"
            )
        self.args, self.state = args, state
        self.run, self.callbacks, self.stopped, self._metrics = None, [], None, {}
        self._session.pending.clear()
        self._session.current = None
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos_token_id = eos if isinstance(eos, int) else None
        self._begin = {
            "resumed": self.ledger.flush() > 0,
            "model": {
                "source": str(getattr(getattr(model, "config", None), "_name_or_path", "")),
                "initial_sha256": _model_digest(model),
            },
            "data": {"train": _data_digest(getattr(train_dataloader, "dataset", None))},
        }

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.start()
        stop = self._record_steps(state)
        if stop is not None and self.stopped is None:
            self.stopped = stop
            log.warning("trustgrpo: stopping training: %s", stop)
            control.should_training_stop = True
            if str(getattr(args.save_strategy, "value", args.save_strategy)) != "no":
                control.should_save = True  # checkpoint the step that was completed
        if control.should_save:
            self.ledger.flush()  # weights on disk imply that the events that shaped them are

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        self.start()
        path = Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not path.is_dir():
            return
        info = CheckpointInfo(state.global_step, path, _weights_sha256(path))
        for cb in self.callbacks:
            cb.on_checkpoint(self._run, info)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.start()
        self._record_steps(state)  # a batch scored after the last step end, if any
        summary: dict[str, Any] = {
            "steps": int(state.global_step),
            "stopped_early": self.stopped is not None,
            "metrics": self._metrics,
        }
        if self.stopped is not None:
            summary["stopped_by"] = self.stopped
        for cb in self.callbacks:
            cb.on_train_end(self._run, summary)
        self.args = None

    # ------------------------------------------------------------------ the run

    def start(self) -> None:
        """Write ``run_started`` (or ``run_resumed``) once per ``train()``: at the first
        reward call, when TRL's trainer (reward functions, weights) is known."""
        if self.run is not None:
            return
        if self.args is None or self.state is None:
            raise UserError("TrustCallback: the run has not begun (on_train_begin not called)")
        trainer = self._session.trainer
        self._parts = self._session.parts_in(trainer)
        weights = _part_weights(trainer, self._parts)
        comps = [
            Component(p.verifier, w, "reward", p.type, p.params)
            for p, w in zip(self._parts, weights, strict=True)
        ]
        reward = Reward(comps) if comps else None  # checks: distinct names, finite weights
        config = self._config(
            trainer, [p.spec(w) for p, w in zip(self._parts, weights, strict=True)]
        )
        provenance = _provenance(self._begin, reward)
        self.run = RunInfo(
            run_dir=self.ledger.run_dir,
            config=config,
            start_step=int(self.state.global_step),
            resumed=bool(self._begin.get("resumed")),
            provenance=provenance,
        )
        infos = tuple(ComponentInfo(c.name, c.role, c.type, c.id) for c in comps)
        self.callbacks = [LedgerCallback(self.ledger), *self._build_monitors(infos)]
        for cb in self.callbacks:
            cb.on_train_start(self.run)

    @property
    def _run(self) -> RunInfo:
        assert self.run is not None, "start() first"
        return self.run

    def seal(self, batch: _Batch) -> None:
        """Fix a batch's rewards and advantages from TRL's log (it has logged the batch)."""
        if batch.rewards is not None:
            return
        found = _trl_log(self._session.trainer, batch)
        if found is not None:
            batch.rewards, batch.advantages = found
            return
        n = len(batch.samples)
        weights = np.asarray(_part_weights(self._session.trainer, self._parts), dtype=np.float64)
        values = np.full((n, len(self._parts)), np.nan)
        for j, part in enumerate(self._parts):
            for i, o in enumerate(batch.outcomes.get(part, [])):
                values[i, j] = np.nan if o.score is None else o.score
        batch.rewards = _weighted_sum(values, weights)
        batch.advantages = np.zeros(n)
        batch.unmatched = n

    def _record_steps(self, state: TrainerState) -> str | None:
        """Record the batches scored since the last call, one step batch per step."""
        pending, self._session.pending = self._session.pending, []
        by_step: dict[int, list[_Batch]] = {}
        for b in pending:
            by_step.setdefault(b.step, []).append(b)
        if not by_step and int(state.global_step) > int(self._metrics.get("step", 0)):
            by_step[int(state.global_step)] = []  # a step that reused earlier completions
        stop = None
        for step, batches in sorted(by_step.items()):
            stop = self._record_step(self._step_batch(step, batches)) or stop
        return stop

    def _step_batch(self, step: int, batches: list[_Batch]) -> StepBatch:
        samples: list[Sample] = []
        outcomes: list[list[Outcome]] = []
        rewards, advantages, unmatched = [np.zeros(0)], [np.zeros(0)], 0
        for b in batches:
            self.seal(b)
            offset = samples[-1].group_id + 1 if samples else 0
            samples += [dataclasses.replace(s, group_id=s.group_id + offset) for s in b.samples]
            for i in range(len(b.samples)):
                row = []
                for p in self._parts:
                    got = b.outcomes.get(p)
                    row.append(
                        got[i] if got else error_outcome(_vid(p), "not called on this batch")
                    )
                outcomes.append(row)
            rewards.append(np.asarray(b.rewards))
            advantages.append(np.asarray(b.advantages))
            unmatched += b.unmatched
        batch = StepBatch(
            step=step,
            samples=samples,
            outcomes=outcomes,
            rewards=np.concatenate(rewards),
            advantages=np.concatenate(advantages),
            group_size=int(getattr(self._session.trainer, "num_generations", 0) or 0)
            or int(getattr(self.args, "num_generations", 1) or 1),
        )
        batch.metrics.update(self._step_metrics(batch, unmatched))
        return batch

    def _record_step(self, batch: StepBatch) -> str | None:
        """The native order: reward events, monitors, step event (and their alerts)."""
        run, stop = self._run, None
        recorder, monitors = self.callbacks[0], self.callbacks[1:]
        if batch.samples:
            recorder.on_step_rewards(run, batch)
            for cb in monitors:
                try:
                    cb.on_step_rewards(run, batch)
                except TrainingStopped as e:
                    stop = str(e)
                    break
        for cb in [recorder] if stop else self.callbacks:  # after a halt, only record
            try:
                if cb.on_step_end(run, batch) is False:
                    stop = (
                        stop
                        or f"{type(cb).__name__}.on_step_end returned False at step {batch.step}"
                    )
            except TrainingStopped as e:
                stop = stop or str(e)
        self._metrics = dict(batch.metrics)
        return stop

    def _step_metrics(self, batch: StepBatch, unmatched: int) -> dict[str, float]:
        r = np.asarray(batch.rewards, dtype=np.float64)
        scored = r[~np.isnan(r)]
        out: dict[str, float] = {
            "step": batch.step,
            "reward/mean": float(scored.mean()) if scored.size else math.nan,
            "reward/std": float(scored.std()) if scored.size else math.nan,
            "reward/masked": float(np.isnan(r).sum()),
            "groups/zero_std_frac": _zero_std_frac(batch.samples, r),
            "trl/unmatched": float(unmatched),
        }
        for j, p in enumerate(self._parts):
            counts: dict[str, int] = {}
            for row in batch.outcomes:
                counts[row[j].status] = counts.get(row[j].status, 0) + 1
            for status, k in sorted(counts.items()):
                out[f"verifier/{p.verifier.name}/{status}"] = float(k)
        out.update(self._tail.take(self._session.trainer))
        return out

    def _config(self, trainer: Any, verifiers: list[dict[str, Any]]) -> dict[str, Any]:
        args, state = self.args, self.state
        assert args is not None and state is not None
        funcs = list(getattr(trainer, "reward_funcs", None) or [])
        names = list(getattr(trainer, "reward_func_names", None) or [])
        weights = _floats(getattr(trainer, "reward_weights", None))
        grpo = {k: getattr(args, k) for k in GRPO_KEYS if hasattr(args, k)}
        return to_jsonable(
            {
                "run": {
                    "name": Path(self.ledger.run_dir).resolve().name,
                    "seed": args.seed,
                    "output_dir": str(args.output_dir),
                },
                "data": {"answer_column": self._session.reference},
                "grpo": {"max_steps": state.max_steps, **grpo},
                "verifiers": verifiers,
                "monitors": self._monitors_table,
                "trl": {
                    "trainer": type(trainer).__name__ if trainer is not None else None,
                    "version": _version("trl"),
                    "reward_funcs": [
                        {"name": n, "weight": w, "audited": isinstance(f, AuditedReward)}
                        for f, n, w in zip(funcs, names, weights, strict=False)
                    ],
                    "callbacks": [type(cb).__name__ for cb in self._custom],
                    "args": args.to_dict(),
                },
            }
        )

    def _build_monitors(self, components: tuple[ComponentInfo, ...]) -> list[Callback]:
        if self._monitor_cfg is None:
            return list(self._custom)
        cfg = self._monitor_cfg
        if not cfg.enabled:
            return []
        seed = int(getattr(self.args, "seed", 0) or 0)
        ctx = Context(components, seed=seed, max_evidence=cfg.max_evidence)
        return [MonitorCallback(cfg, ctx, ledger=self.ledger, run_dir=self.ledger.run_dir)]


def _parse_monitors(
    monitors: Any,
) -> tuple[MonitorsConfig | None, list[Callback], dict[str, Any]]:
    """``(settings, custom callbacks, the [monitors] table to record)``."""
    if monitors is None:
        return load_config({}), [], {}
    if isinstance(monitors, MonitorsConfig):
        return monitors, [], to_jsonable(dataclasses.asdict(monitors))
    if isinstance(monitors, Mapping):
        return load_config(monitors), [], to_jsonable(dict(monitors))
    if isinstance(monitors, Sequence) and not isinstance(monitors, str):
        wrong = [type(m).__name__ for m in monitors if not isinstance(m, Callback)]
        if wrong:
            raise UserError(
                "TrustCallback.monitors: expected trustgrpo Callback objects, a [monitors] "
                f"table or a MonitorsConfig, got {', '.join(wrong)}"
            )
        return None, list(monitors), {"enabled": False}
    raise UserError(f"TrustCallback.monitors: unexpected {type(monitors).__name__}")


def _part_weights(trainer: Any, parts: Sequence[AuditedReward]) -> list[float]:
    """Each audited function's weight in TRL's ``reward_weights`` (1 when unknown)."""
    funcs = list(getattr(trainer, "reward_funcs", None) or [])
    weights = _floats(getattr(trainer, "reward_weights", None))
    out = []
    for p in parts:
        i = next((k for k, f in enumerate(funcs) if f is p), None)
        out.append(weights[i] if i is not None and i < len(weights) else 1.0)
    return out


def _vid(part: AuditedReward) -> str:
    v = part.verifier
    return f"{v.name}@{v.version}"


def _zero_std_frac(samples: Sequence[Sample], rewards: np.ndarray) -> float:
    groups: dict[int, list[float]] = {}
    for s, r in zip(samples, rewards.tolist(), strict=True):
        if not math.isnan(r):
            groups.setdefault(s.group_id, []).append(r)
        else:
            groups.setdefault(s.group_id, [])
    if not groups:
        return math.nan
    flat = [len(v) < 2 or max(v) == min(v) for v in groups.values()]
    return sum(flat) / len(flat)


class _MetricTail:
    """TRL's step scalars (KL, entropy, clip ratios...) appended since the last look.

    TRL keeps lists in ``trainer._metrics["train"]`` and replaces them when it logs; a list
    seen before yields only its new items."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[list[Any], int]] = {}

    def take(self, trainer: Any) -> dict[str, float]:
        store = getattr(trainer, "_metrics", None)
        train = store.get("train") if isinstance(store, Mapping) else None
        if not isinstance(train, Mapping):
            return {}
        out = {}
        for key, values in list(train.items()):
            if not isinstance(values, list):
                continue
            seen = self._seen.get(key)
            start = seen[1] if seen is not None and seen[0] is values else 0
            self._seen[key] = (values, len(values))
            new = [
                float(v)
                for v in values[start:]
                if isinstance(v, (int, float)) and math.isfinite(float(v))
            ]
            if new:
                out[str(key)] = sum(new) / len(new)
        return out


# --------------------------------------------------------------------------- provenance


def _provenance(begin: Mapping[str, Any], reward: Reward | None) -> dict[str, Any]:
    import torch

    import trustgrpo

    return {
        "code": {"trustgrpo": trustgrpo.__version__, "git": None},
        "packages": {
            "python": platform.python_version(),
            **{
                name: _version(name)
                for name in ("trl", "transformers", "torch", "accelerate", "datasets", "numpy")
            },
        },
        "hardware": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "model": dict(begin.get("model") or {}),
        "data": dict(begin.get("data") or {}),
        "verifiers": reward.inventory() if reward is not None else [],
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _model_digest(model: Any) -> str | None:
    """SHA-256 over the parameters' names, shapes and bytes, in a stable order (the same
    value as :func:`trustgrpo.policy.lm.state_digest` for float32 models)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        flat = t.detach().contiguous().cpu().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _HashSink(io.RawIOBase):
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.h.update(b)
        return len(b)


def _data_digest(dataset: Any) -> dict[str, Any]:
    """Rows, columns, cache files and the SHA-256 of the Arrow IPC stream of a
    ``datasets.Dataset`` as TRL iterates it (other datasets: their type and length)."""
    if dataset is None:
        return {}
    out: dict[str, Any] = {"type": type(dataset).__name__, "path": None}
    with contextlib.suppress(TypeError):
        out["rows"] = len(dataset)
    files = [f.get("filename") for f in getattr(dataset, "cache_files", None) or []]
    out["path"] = files[0] if files else None
    try:
        import pyarrow as pa

        table = dataset.with_format("arrow")[:]
        if isinstance(table, pa.Table):
            sink = _HashSink()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            out["sha256"] = sink.h.hexdigest()
            out["columns"] = list(table.column_names)
    except (AttributeError, TypeError, ValueError, ImportError):
        pass
    return out


def _weights_sha256(directory: Path) -> str:
    """SHA-256 of the checkpoint's weights file; for several (shards, adapters), of the
    ``name sha256`` lines of each."""
    files = sorted(directory.glob("*.safetensors")) or sorted(
        p for p in directory.glob("*.bin") if p.name.startswith(("pytorch_model", "adapter_model"))
    )
    if len(files) == 1:
        return sha256_file(files[0])
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name} {sha256_file(f)}\n".encode())
    return h.hexdigest()


__all__ = ["AsyncAuditedReward", "AuditedReward", "TrustCallback", "audited"]
