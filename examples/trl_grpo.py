"""Train with Hugging Face TRL's GRPOTrainer and keep trustgrpo's signed reward ledger.

    pip install 'trustgrpo[trl]'
    python examples/trl_grpo.py runs/trl-grpo            # a tiny model, five steps on CPU
    trustgrpo audit verify runs/trl-grpo                 # the ledger and its signatures
    PYTHONPATH=examples trustgrpo audit replay runs/trl-grpo   # re-score every reward
    trustgrpo monitor runs/trl-grpo                      # reward-hacking and health detectors

Two rewards, both audited: a trustgrpo verifier (the answer's number is right) and a plain TRL
reward function (the completion is a bare number). The run directory is both TRL's
``output_dir`` and the ledger's, so checkpoint events point at TRL's ``checkpoint-N`` folders.
The policy is a tiny model built from a config (nothing is downloaded); pass any causal LM
name or path as ``model=`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def bare_number(completions: list[str], **kwargs: Any) -> list[float | None]:
    """A TRL reward function: 1.0 when the completion is just a number, else 0.0."""
    return [float(c.strip().lstrip("-").isdigit()) for c in completions]


def main(run_dir: Path) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from trustgrpo.config import PolicyConfig
    from trustgrpo.integrations.trl import TrustCallback, audited
    from trustgrpo.ledger import Ledger
    from trustgrpo.policy.lm import build_char_tokenizer, build_tiny_model
    from trustgrpo.tasks.arithmetic import make_problems

    rows, _ = make_problems(64, 0, seed=0, max_operand=9)  # "7-3=" → "4", with column "op"
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "answer", "op")} for r in rows])
    tokenizer = build_char_tokenizer(["0123456789+-= "])
    model = build_tiny_model(PolicyConfig(hidden_size=32, num_layers=2, num_heads=2), tokenizer, 0)

    ledger = Ledger.open(run_dir)
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[
            audited({"type": "numeric", "name": "answer"}, ledger),  # a trustgrpo verifier
            audited(bare_number, ledger),  # a TRL reward function
        ],
        args=GRPOConfig(
            output_dir=str(run_dir),
            num_generations=4,
            per_device_train_batch_size=16,
            max_completion_length=4,
            max_steps=5,
            save_steps=5,
            learning_rate=1e-2,
            logging_steps=1,
            use_cpu=True,
            report_to=[],
            seed=0,
        ),
        train_dataset=data,
        callbacks=[TrustCallback(ledger, reference="answer")],  # the column verifiers check
    )
    trainer.train()
    ledger.close()
    print(f"trustgrpo: ledger written to {run_dir}; check it: trustgrpo audit verify {run_dir}")


if __name__ == "__main__":
    # Import this file as the module `trl_grpo`, so that the reward function is recorded as
    # "trl_grpo:bare_number", which `audit replay` can import again ("__main__:..." it cannot).
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import trl_grpo

    trl_grpo.main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/trl-grpo"))
