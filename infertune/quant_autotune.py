"""The joint quantization-scheme x tile search wired to the isolated worker: the library
behind `infertune autotune matmul --quant all|int8,int4-g128,... [--min-sqnr DB]`."""

from __future__ import annotations

from collections.abc import Callable

from kernels.device import DeviceInfo
from kernels.spec import KernelSpec
from tuner.outcome import Outcome
from tuner.quant_search import Candidate, QuantTuneResult, quant_tune
from tuner.record import TuningRecord
from tuner.search import SearchOptions, to_record
from tuner.worker import TimingPolicy, Worker, WorkerEvaluator

# The kernels whose problem is "a linear layer": the float one it replaces and the
# quantized ones; any of them may start a joint search.
LINEAR_KERNELS = ("matmul", "matmul_w8a16", "matmul_w4a16", "matmul_fp8")


def is_joint(quant: str | None) -> bool:
    """`--quant` names a search over schemes ("all" or a comma list), not one scheme."""
    return quant is not None and (quant.strip() == "all" or "," in quant)


def autotune_quant(cands: list[Candidate], device: DeviceInfo, *, storage: str | None, options: SearchOptions,
                   policy: TimingPolicy, trial_timeout_s: float, min_sqnr_db: float | None,
                   on_trial: Callable[[str, object, Outcome, int], None] | None = None,
                   ) -> tuple[QuantTuneResult, list[TuningRecord]]:
    """Run the joint search in one worker process (inputs are rebuilt when the scheme
    changes; that costs a quantization, not a process start). Returns the result and one
    database record per scheme that has a passing config (none when interrupted)."""
    worker = Worker()

    def evaluator_of(cand: Candidate) -> WorkerEvaluator:
        evaluator = WorkerEvaluator(cand.spec.name, cand.problem, seed=options.seed, policy=policy,
                                    trial_timeout_s=trial_timeout_s)
        evaluator.worker = worker  # one process for every scheme
        return evaluator

    try:
        result = quant_tune(cands, device, evaluator_of, storage=storage, options=options,
                            min_sqnr_db=min_sqnr_db, on_trial=on_trial)
    finally:
        worker.close()
    records = []
    if not result.interrupted:
        specs: dict[str, KernelSpec] = {c.scheme.name: c.spec for c in cands}
        for scheme, tuned in result.per_scheme.items():
            record = to_record(specs[scheme], tuned, device)
            if record is not None:
                record.extra["float_sqnr_db"] = result.sqnr_db.get(scheme)
                record.extra["quant_study"] = result.study_name
                records.append(record)
    return result, records
