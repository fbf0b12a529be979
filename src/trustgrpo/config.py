"""Run configuration: one frozen dataclass per section of a run file (TOML).

Every field is documented once, by the docstring under it; ``trustgrpo config-help`` and the
README's run-file reference are generated from those docstrings.

Loading checks the whole file before any work is done and reports every problem at once, each
naming its TOML path (``grpo.num_generations: expected an integer ≥ 2, got 1``); unknown keys
get the closest valid key suggested (:mod:`trustgrpo._tables`, shared with ``[monitors]`` and
the verifiers' parameters).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from trustgrpo._tables import Dialect, build_dataclass, unknown_key
from trustgrpo._tables import field_range as _range
from trustgrpo.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Scalar = Literal["mask"] | float  # "mask", or a number (see RewardConfig)

_SECTION = Dialect(float_range=False)
"""How section problems read: a float that is not a number at all gets no range."""


def _file(kind: str = "file") -> dict[str, Any]:
    return {"path": kind}


@dataclass(frozen=True)
class RunConfig:
    """[run]: identity and reproducibility of the run."""

    name: str = "run"
    """Name of the run; the run directory is ``<output_dir>/<name>``."""
    output_dir: str = "runs"
    """Folder that holds run directories (relative paths are relative to the working directory)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation; the same seed gives the same run."""
    threads: int = field(default=0, metadata=_range(ge=0))
    """PyTorch intra-op threads; 0 picks the number of physical cores."""


@dataclass(frozen=True)
class PolicyConfig:
    """[policy]: the causal language model being trained."""

    model: str = "tiny"
    """A local Hugging Face model directory, or ``"tiny"`` to build a small model from the
    fields below (no download ever happens)."""
    tokenizer: str = ""
    """Tokenizer directory; empty means the model directory's, or, for ``"tiny"``, a
    character tokenizer built from the training data."""
    architecture: Literal["llama", "qwen2"] = "llama"
    """Architecture of a ``"tiny"`` model."""
    hidden_size: int = field(default=64, metadata=_range(ge=8))
    """Hidden size of a ``"tiny"`` model."""
    num_layers: int = field(default=2, metadata=_range(ge=1))
    """Number of transformer layers of a ``"tiny"`` model."""
    num_heads: int = field(default=4, metadata=_range(ge=1))
    """Attention heads of a ``"tiny"`` model (must divide ``hidden_size``)."""
    intermediate_size: int = field(default=0, metadata=_range(ge=0))
    """MLP width of a ``"tiny"`` model; 0 means ``4 * hidden_size``."""
    max_position_embeddings: int = field(default=512, metadata=_range(ge=16))
    """Longest prompt plus completion a ``"tiny"`` model accepts."""


@dataclass(frozen=True)
class DataConfig:
    """[data]: where prompts come from."""

    train: str = field(default="", metadata=_file())
    """Training prompts: a JSONL or Parquet file, or a Hugging Face dataset saved to disk."""
    eval: str = field(default="", metadata=_file())
    """Held-out prompts for evaluation (same formats); empty for none."""
    prompt_column: str = "prompt"
    """Column holding the prompt text."""
    answer_column: str = "answer"
    """Column holding the reference answer given to verifiers; empty for none."""
    id_column: str = ""
    """Column holding a stable prompt id; empty uses the row number."""
    chat_template: bool = False
    """Apply the tokenizer's chat template to each prompt (as one user message)."""
    system_prompt: str = ""
    """System message placed before the prompt when ``chat_template`` is on."""
    max_prompt_tokens: int = field(default=256, metadata=_range(ge=1))
    """Prompts longer than this (in tokens) are cut from the left."""


@dataclass(frozen=True)
class SFTConfig:
    """[sft]: the supervised warm start run by ``trustgrpo sft`` (prompt → answer)."""

    steps: int = field(default=600, metadata=_range(ge=1))
    """Optimiser steps of supervised training."""
    batch_size: int = field(default=64, metadata=_range(ge=1))
    """Examples per step."""
    learning_rate: float = field(default=3e-3, metadata=_range(gt=0))
    """AdamW learning rate (linear warm-up over 5% of steps, then cosine decay)."""
    target_template: str = " {answer}"
    """How the supervised target is written: ``{answer}`` is the answer column, and any other
    column can be named too (e.g. ``"{teacher}"`` for a column of demonstrations)."""


@dataclass(frozen=True)
class GenerationConfig:
    """[generation]: how completions are sampled during training."""

    max_new_tokens: int = field(default=32, metadata=_range(ge=1))
    """Most tokens generated per completion."""
    temperature: float = field(default=1.0, metadata=_range(gt=0))
    """Sampling temperature (the log-probabilities of the loss use the same temperature)."""
    top_p: float = field(default=1.0, metadata=_range(gt=0, le=1))
    """Nucleus sampling mass; 1.0 samples from the whole distribution."""
    stop_at_eos: bool = True
    """Stop a completion at the end-of-sequence token."""


@dataclass(frozen=True)
class GRPOConfig:
    """[grpo]: the algorithm (DeepSeekMath GRPO and its variants)."""

    num_generations: int = field(default=8, metadata=_range(ge=2))
    """G: completions sampled per prompt, or episodes per seeded start state (the group)."""
    prompts_per_step: int = field(default=8, metadata=_range(ge=1))
    """Prompts (or seeded start states of an ``[env]`` run) per step; a step scores
    ``prompts_per_step * num_generations`` completions or episodes."""
    max_steps: int = field(default=100, metadata=_range(ge=1))
    """Training steps."""
    learning_rate: float = field(default=1e-4, metadata=_range(gt=0))
    """AdamW learning rate (constant after a short warm-up)."""
    warmup_steps: int = field(default=0, metadata=_range(ge=0))
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = field(default=0.0, metadata=_range(ge=0))
    """AdamW weight decay."""
    max_grad_norm: float = field(default=1.0, metadata=_range(ge=0))
    """Gradient clipping norm; 0 turns clipping off."""
    beta: float = field(default=0.0, metadata=_range(ge=0))
    """KL coefficient to the frozen reference policy (k3 estimator); 0 loads no reference."""
    epsilon_low: float = field(default=0.2, metadata=_range(ge=0, lt=1))
    """Lower clip range of the importance ratio: ratios below ``1 - epsilon_low`` are clipped."""
    epsilon_high: float = field(default=0.2, metadata=_range(ge=0))
    """Upper clip range (DAPO clip-higher uses 0.28): ratios above ``1 + epsilon_high``."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Advantage scaling: divide by the group's std (GRPO), the batch's std, or not at all
    (Dr. GRPO)."""
    loss_aggregation: Literal["token_mean", "sequence_mean", "dr_grpo"] = "token_mean"
    """How per-token losses become one number: mean over all tokens of the batch (DAPO),
    mean of per-sequence means (original GRPO), or sum divided by a constant (Dr. GRPO)."""
    importance_sampling: Literal["token", "sequence"] = "token"
    """Importance ratio per token (GRPO) or per sequence (GSPO, the length-normalised
    geometric mean of the token ratios)."""
    num_iterations: int = field(default=1, metadata=_range(ge=1))
    """μ: optimiser passes over each step's batch (old log-probs are stored when > 1)."""
    minibatches: int = field(default=1, metadata=_range(ge=1))
    """Optimiser steps per pass: the step's samples are shuffled (seeded) and split into this
    many minibatches, as PPO does; 1 is one full-batch step per pass."""
    mask_truncated: bool = False
    """Exclude completions cut at ``max_new_tokens`` from the loss (DAPO overlong filtering)."""
    dynamic_sampling: bool = False
    """Skip groups whose rewards are all equal (DAPO dynamic sampling, without resampling)."""
    eval_every: int = field(default=0, metadata=_range(ge=0))
    """Evaluate on ``data.eval`` every N steps (greedy decoding); 0 only at the end."""
    checkpoint_every: int = field(default=0, metadata=_range(ge=0))
    """Save a checkpoint every N steps; 0 saves only the last step."""


@dataclass(frozen=True)
class RewardConfig:
    """[reward]: how verifier outcomes become the reward."""

    on_error: Scalar = "mask"
    """Reward of a sample whose verifier failed: ``"mask"`` (excluded from its group's
    statistics, advantage 0) or a number."""
    on_timeout: Scalar = "mask"
    """Reward of a sample whose verifier timed out: ``"mask"`` or a number."""
    on_abstain: Scalar = "mask"
    """Reward of a sample a verifier abstained on: ``"mask"`` or a number."""
    self_test: int = field(default=16, metadata=_range(ge=0))
    """Gold answers each verifier must score as correct before training (0 turns it off). In an
    ``[env]`` run: up to 4 episodes of random actions that must replay to the same return
    (the environment is deterministic given the seed and the actions)."""


@dataclass(frozen=True)
class VerifierSpec:
    """One entry of ``[[verifiers]]``: a verifier and how its score enters the reward."""

    type: str
    """Registered verifier type (``exact``, ``numeric``, ...) or ``"package.module:function"``
    for a TRL-shaped reward function."""
    weight: float = 1.0
    """Weight of this component in the weighted sum."""
    role: Literal["reward", "gate", "shaping"] = "reward"
    """``reward``: part of the weighted sum; ``gate``: must be correct for the others to count;
    ``shaping``: added but marked as shaping, not verification."""
    name: str = ""
    """Display name; defaults to the type."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Every other key of the table: parameters of the verifier."""


@dataclass(frozen=True)
class LedgerConfig:
    """[ledger]: the signed, tamper-evident record of the run."""

    enabled: bool = True
    """Record the run in a ledger; turning it off must be explicit."""
    url: str = ""
    """Store: empty for SQLite in the run directory, or ``postgresql://...``."""
    signing_key: str = field(default="", metadata=_file())
    """Ed25519 private key (PEM) to sign checkpoints; empty generates one per run."""
    writer: Literal["process", "thread"] = "process"
    """Where events are encoded, hashed and stored: a child process (the trainer's
    interpreter lock stays free; the default) or a thread of the trainer."""


@dataclass(frozen=True)
class SandboxConfig:
    """[sandbox]: limits for running model-written code (code verifiers)."""

    timeout_s: float = field(default=5.0, metadata=_range(gt=0))
    """Wall-clock limit per program."""
    memory_mb: int = field(default=512, metadata=_range(ge=32))
    """Address-space limit per program."""
    max_output_bytes: int = field(default=1_000_000, metadata=_range(ge=1024))
    """Output kept per stream; more ends the run with status ``output_limit``."""
    workers: int = field(default=0, metadata=_range(ge=0))
    """Programs run at once; 0 uses the machine's cores."""
    allow_weak_isolation: bool = False
    """Allow code verifiers to run with less than process + user + rlimit isolation."""


@dataclass(frozen=True)
class EnvConfig:
    """[env]: a Gymnasium environment to train on; its return is the reward (a control run)."""

    id: str = ""
    """Registered Gymnasium environment id (``"CartPole-v1"``); empty for a language-model run.
    A control run has no prompts (``[data]``) and needs no ``[[verifiers]]``: the environment
    is the verifier (type ``env``, added automatically)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gymnasium.make`` (e.g. ``{continuous = true}``)."""
    max_episode_steps: int = field(default=0, metadata=_range(ge=0))
    """Time limit: longer episodes are *truncated*; 0 keeps the environment's registered one."""
    num_envs: int = field(default=0, metadata=_range(ge=0))
    """Sub-environments of the vector environment that runs a step's episodes (each freed one
    takes the next episode); 0 runs all ``prompts_per_step * num_generations`` at once."""
    vectorization: Literal["sync", "async"] = "sync"
    """``sync`` steps the sub-environments in this process (fastest for classic control);
    ``async`` gives each its own process (for environments whose step is expensive)."""
    supervision: Literal["outcome", "process"] = "process"
    """``process`` (the default: control tasks pay a reward every step): each action gets the
    reward-to-go from its step, normalised within the group at that step (see
    ``trustgrpo.advantage``); ``outcome``: every action gets its episode's return, normalised
    within the group (DeepSeekMath §4.1.2)."""
    gamma: float = field(default=0.99, metadata=_range(gt=0, le=1))
    """Discount of the reward-to-go in process supervision (outcome supervision and the ledger
    use the undiscounted return)."""
    eval_episodes: int = field(default=10, metadata=_range(ge=0))
    """Greedy episodes (most likely action; fixed seeds, distinct from training seeds) run at
    ``grpo.eval_every`` steps and at the end; 0 turns evaluation off."""


@dataclass(frozen=True)
class ControlConfig:
    """[control]: the MLP policy of an ``[env]`` run (see ``trustgrpo.policy.control``)."""

    hidden_sizes: tuple[int, ...] = field(default=(64, 64), metadata=_range(ge=1))
    """Widths of the hidden layers."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Activation of the hidden layers."""
    normalize_obs: bool = False
    """Normalise observations by a running mean and std (updated after each step's update,
    saved in checkpoints)."""
    squash: Literal["clip", "tanh"] = "clip"
    """Box actions: ``clip`` the Gaussian sample into the bounds (log-probability of the
    unclipped sample, as SB3 and CleanRL), or ``tanh``-squash it into them (exact
    change-of-variables log-probability)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of Box actions (learned, state-independent)."""


@dataclass(frozen=True)
class Config:
    """A whole run file."""

    run: RunConfig = field(default_factory=RunConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    verifiers: tuple[VerifierSpec, ...] = ()
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    monitors: Mapping[str, Any] = field(default_factory=dict)
    """[monitors]: detector settings, checked by :func:`trustgrpo.monitors.check_config`."""
    source: str = ""
    """Path of the run file this came from (not a TOML key)."""

    @property
    def is_control(self) -> bool:
        """True for a control run (``[env]`` names an environment)."""
        return bool(self.env.id)

    @property
    def run_dir(self) -> Path:
        """``<run.output_dir>/<run.name>``."""
        return Path(self.run.output_dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``run.toml`` and the ledger."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out["verifiers"] = [_spec_to_table(v) for v in self.verifiers]
        return out

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections replaced."""
        return dataclasses.replace(self, **sections)


SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "policy": PolicyConfig,
    "data": DataConfig,
    "sft": SFTConfig,
    "generation": GenerationConfig,
    "grpo": GRPOConfig,
    "reward": RewardConfig,
    "ledger": LedgerConfig,
    "sandbox": SandboxConfig,
    "env": EnvConfig,
    "control": ControlConfig,
}
_SPEC_KEYS = ("type", "weight", "role", "name")


def _spec_to_table(spec: VerifierSpec) -> dict[str, Any]:
    table: dict[str, Any] = {k: getattr(spec, k) for k in _SPEC_KEYS}
    table.update(spec.params)
    return table


# --------------------------------------------------------------------------- field docs


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass, read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in itertools.pairwise(body):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = inspect.cleandoc(node.value.value)
    return docs


# --------------------------------------------------------------------------- validation


def _build_verifiers(tables: Any, problems: list[str]) -> tuple[VerifierSpec, ...]:
    if not isinstance(tables, list):
        problems.append(f"verifiers: expected an array of tables ([[verifiers]]), got {tables!r}")
        return ()
    specs = []
    for i, table in enumerate(tables):
        path = f"verifiers[{i}]"
        if not isinstance(table, Mapping):
            problems.append(f"{path}: expected a table, got {table!r}")
            continue
        if "type" not in table:
            problems.append(f'{path}.type: missing (the verifier to use, e.g. "numeric")')
            continue
        keys = {k: v for k, v in table.items() if k in _SPEC_KEYS}
        keys["params"] = {k: v for k, v in table.items() if k not in _SPEC_KEYS}
        spec = build_dataclass(VerifierSpec, path, keys, problems, _SECTION)
        if spec is not None:  # None: the type is not a string
            specs.append(spec)
    return tuple(specs)


def _cross_checks(cfg: Config, base: Path, problems: list[str]) -> None:
    """Checks that involve several fields or the file system."""
    p = cfg.policy
    if p.model == "tiny":
        if p.hidden_size % p.num_heads:
            problems.append(
                f"policy.num_heads: expected a divisor of policy.hidden_size ({p.hidden_size}), "
                f"got {p.num_heads}"
            )
    elif not (base / p.model).is_dir() and not Path(p.model).is_dir():
        problems.append(
            f'policy.model: expected "tiny" or a local model directory, got {p.model!r} '
            "(no such directory)"
        )
    if p.tokenizer and not Path(p.tokenizer).is_dir():
        problems.append(f"policy.tokenizer: expected a tokenizer directory, got {p.tokenizer!r}")
    if cfg.is_control:
        _env_checks(cfg, problems)
    elif not cfg.data.train:
        problems.append("data.train: missing (a JSONL or Parquet file of prompts)")
    for name in ("train", "eval"):
        value = getattr(cfg.data, name)
        if value and not Path(value).exists():
            problems.append(f"data.{name}: file not found: {value}")
    if cfg.ledger.signing_key and not Path(cfg.ledger.signing_key).is_file():
        problems.append(f"ledger.signing_key: file not found: {cfg.ledger.signing_key}")
    if cfg.ledger.url and not cfg.ledger.url.startswith(("postgresql://", "postgres://")):
        problems.append(
            f"ledger.url: expected empty (SQLite) or a postgresql:// URL, got {cfg.ledger.url!r}"
        )
    if not cfg.verifiers and not any(p.startswith("verifiers") for p in problems):
        problems.append("verifiers: expected at least one [[verifiers]] table")


ENV_VERIFIER = "env"


def env_verifier_spec(env: EnvConfig) -> VerifierSpec:
    """The ``[[verifiers]]`` entry of a control run: its environment (type ``env``)."""
    params = {"id": env.id, "kwargs": dict(env.kwargs), "max_episode_steps": env.max_episode_steps}
    return VerifierSpec(type=ENV_VERIFIER, name=ENV_VERIFIER, params=params)


def _with_env_verifier(cfg: Config, problems: list[str]) -> Config:
    """Add the environment as the verifier of a control run (or check the one written)."""
    if not cfg.is_control:
        for i, spec in enumerate(cfg.verifiers):
            if spec.type == ENV_VERIFIER:
                problems.append(
                    f"verifiers[{i}].type: 'env' scores the episodes of an [env] run; expected "
                    "[env] id to name the environment"
                )
        return cfg
    want = env_verifier_spec(cfg.env)
    if not cfg.verifiers:
        return dataclasses.replace(cfg, verifiers=(want,))
    for i, spec in enumerate(cfg.verifiers):
        if spec.type != ENV_VERIFIER:
            problems.append(
                f"verifiers[{i}].type: an [env] run is scored by its environment alone; "
                f"expected no [[verifiers]] tables, got type {spec.type!r}"
            )
        elif (spec.name or spec.type, dict(spec.params), spec.weight, spec.role) != (
            want.name,
            dict(want.params),
            1.0,
            "reward",
        ):
            problems.append(
                f"verifiers[{i}]: expected the [env] section's environment "
                f"{_spec_to_table(want)}, got {_spec_to_table(spec)}"
            )
    return cfg


def _env_checks(cfg: Config, problems: list[str]) -> None:
    """A control run: no prompt data, and an environment that can be made and trained."""
    for name in ("train", "eval"):
        if getattr(cfg.data, name):
            problems.append(f"data.{name}: an [env] run has no prompts; expected it unset")
    from trustgrpo.verifiers.env import env_id_problems, make_env

    found = env_id_problems(cfg.env.id, "env.id")
    if found:
        problems.extend(found)
        return
    try:
        env = make_env(cfg.env.id, cfg.env.kwargs, cfg.env.max_episode_steps)
    except Exception as e:
        problems.append(f"env: cannot make {cfg.env.id!r}: {type(e).__name__}: {e}")
        return
    try:
        from trustgrpo.policy.control import make_distribution, observation_dim

        observation_dim(env.observation_space)
        make_distribution(env.action_space, cfg.control.squash)
    except ValueError as e:
        problems.append(f"env.id: {cfg.env.id!r}: {e}")
    if not cfg.env.max_episode_steps and env.spec.max_episode_steps is None:
        problems.append(
            f"env.max_episode_steps: {cfg.env.id!r} has no registered time limit; expected a "
            "number ≥ 1"
        )
    env.close()


def _check_monitors(cfg: Config) -> list[str]:
    try:
        from trustgrpo.monitors import check_config
    except ImportError:
        return [] if not cfg.monitors else ["monitors: this installation has no monitors"]
    return list(check_config(cfg.monitors))


def _resolve_paths(cfg: Config, base: Path) -> Config:
    """Make file paths in the run file relative to the run file's folder."""

    def fix(value: str) -> str:
        if not value or Path(value).is_absolute():
            return value
        candidate = base / value
        return str(candidate) if candidate.exists() or not Path(value).exists() else value

    data = dataclasses.replace(cfg.data, train=fix(cfg.data.train), eval=fix(cfg.data.eval))
    policy = cfg.policy
    if policy.model != "tiny":
        policy = dataclasses.replace(policy, model=fix(policy.model))
    if policy.tokenizer:
        policy = dataclasses.replace(policy, tokenizer=fix(policy.tokenizer))
    ledger = dataclasses.replace(cfg.ledger, signing_key=fix(cfg.ledger.signing_key))
    return dataclasses.replace(cfg, data=data, policy=policy, ledger=ledger)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise ConfigError([f"--set {text}: expected section.key=value"])
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError([f"--set {text}: expected section.key=value, e.g. grpo.beta=0.04"])
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def from_dict(
    raw: Mapping[str, Any], *, base: Path | None = None, source: str = "", check_files: bool = True
) -> Config:
    """Build and check a config from parsed TOML; raise ConfigError listing every problem."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    valid = [*SECTIONS, "verifiers", "monitors"]
    for key, value in raw.items():
        if key == "verifiers":
            sections["verifiers"] = _build_verifiers(value, problems)
        elif key == "monitors":
            if isinstance(value, Mapping):
                sections["monitors"] = dict(value)
            else:
                problems.append(f"monitors: expected a table, got {value!r}")
        elif key in SECTIONS:
            sections[key] = build_dataclass(SECTIONS[key], key, value, problems, _SECTION)
        else:
            problems.append(unknown_key("", key, valid))
    cfg = Config(source=source, **sections)
    base = base or Path.cwd()
    cfg = _resolve_paths(cfg, base)
    cfg = _with_env_verifier(cfg, problems)
    if check_files:
        _cross_checks(cfg, base, problems)
    if not problems:
        # Verifier parameters are checked by the verifier registry, still before any work.
        from trustgrpo.verifiers.registry import check_specs

        problems.extend(check_specs(cfg.verifiers, cfg))
        problems.extend(_check_monitors(cfg))
    if problems:
        raise ConfigError(problems, source=source or None)
    return cfg


def load(path: str | Path, overrides: Sequence[str] = (), *, check_files: bool = True) -> Config:
    """Read a run file, apply ``--set`` overrides, and check everything."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: run file not found"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    apply_overrides(raw, overrides)
    return from_dict(raw, base=path.parent, source=str(path), check_files=check_files)


#: What ``control_config`` changes from the defaults (chosen on CartPole-v1 and Pendulum-v1 in
#: ``bench/control.py``; the run files in ``examples/`` tune further per task).
CONTROL_PRESET: dict[str, dict[str, Any]] = {
    "grpo": {
        "num_generations": 8,
        "prompts_per_step": 4,
        "max_steps": 100,
        "learning_rate": 3e-3,
        "num_iterations": 4,
        "minibatches": 4,
        "max_grad_norm": 0.5,
    },
}


def control_config(env_id: str, overrides: Sequence[str] = ()) -> Config:
    """A checked config for a control run on ``env_id`` with nothing else given.

    It is the default config plus ``[env] id`` and :data:`CONTROL_PRESET` (several minibatch
    passes per step at a learning rate for a small MLP: the language-model defaults, one
    full-batch step at 1e-4, learn far too slowly), named after the environment
    (``runs/<env id>``). ``overrides`` are ``section.key=value`` strings, as ``--set`` takes.
    """
    raw: dict[str, Any] = {k: dict(v) for k, v in CONTROL_PRESET.items()}
    raw["env"] = {"id": env_id}
    raw["run"] = {"name": env_id}
    apply_overrides(raw, overrides)
    return from_dict(raw, source="")


def with_env(cfg: Config, env_id: str) -> Config:
    """``cfg`` training on ``env_id`` instead (``Trainer(config, env=...)``); checked again."""
    raw = cfg.to_dict()
    raw["env"]["id"] = env_id
    raw["verifiers"] = [v for v in raw["verifiers"] if v.get("type") != ENV_VERIFIER]
    if not raw["verifiers"]:
        del raw["verifiers"]
    base = Path(cfg.source).parent if cfg.source else None
    return from_dict(raw, base=base, source=cfg.source)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> None:
    """Apply ``section.key=value`` strings to parsed TOML in place."""
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError([f"--set {text}: {part} is not a table"])
        node[parts[-1]] = value


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write plain config data as TOML (enough for ``run.toml``; no external writer needed)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{k} = {scalar(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    for section, body in data.items():
        if section == "verifiers":
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in body.items())
        lines.append("")
    for table in data.get("verifiers", []):
        lines.append("[[verifiers]]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    """The run-file reference (every section and field with its default and doc)."""
    out = []
    for name, cls in [*SECTIONS.items(), ("verifiers", VerifierSpec)]:
        title = f"[[{name}]]" if name == "verifiers" else f"[{name}]"
        out.append(
            f"#### `{title}`\n\n{inspect.cleandoc(cls.__doc__ or '').split(':', 1)[-1].strip()}\n"
        )
        out.append("| key | default | meaning |\n|---|---|---|")
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if isinstance(f.default, tuple):
                default = "[" + ", ".join(repr(x) for x in f.default) + "]"
            elif f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = "{}"
            else:
                default = "(required)"
            doc = " ".join(docs.get(f.name, "").split())
            out.append(f"| `{f.name}` | `{default}` | {doc} |")
        out.append("")
    return "\n".join(out)


__all__ = [
    "Config",
    "ControlConfig",
    "DataConfig",
    "EnvConfig",
    "GRPOConfig",
    "GenerationConfig",
    "LedgerConfig",
    "PolicyConfig",
    "RewardConfig",
    "RunConfig",
    "SFTConfig",
    "SandboxConfig",
    "VerifierSpec",
    "control_config",
    "field_docs",
    "from_dict",
    "load",
    "reference_markdown",
    "with_env",
]
