"""Training, split by job: `assemble` (config → data, model, method, optimiser; also what evaluation and figures
use to build a model, without the loop), `fit` (the epoch loop with per-epoch monitoring and exact resume) and
`retain` (which checkpoints a selection rule could still pick). Selection itself is `bench.selection`, the
final evaluation keyed artifacts of `bench.eval_store`; `bench.train.train_run` chains them."""
